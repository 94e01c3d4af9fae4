#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cloud/backend/backend.hpp"
#include "cloud/backend/local/local_backend.hpp"
#include "cloud/images/registry.hpp"
#include "cloud/plan/run_builder.hpp"
#include "commands/common.hpp"
#include "commands/watch.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

struct RunOptions {
  std::string file;
  std::string target;
  std::string gpu;
  std::string cloud;
  std::vector<std::string> env;
  std::vector<std::string> args;
  bool detach = false;
  bool json = false;
  bool dry_run = false;
};

// A remote cloud's nodes pull the function's image from the cloud's registry: builds it (content
// addressed, so unchanged inputs give the same digest), pushes it unless the state says the cloud
// already holds that digest (`push` false: build only, for --dry-run), and points `spec` at it.
util::Result<void> place_image(Context& ctx, const cloud::Config& config, const cloud::CloudConfig& cloud,
                               const manifest::Manifest& manifest, const std::string& image_name, cloud::StateStore& store,
                               cloud::RunSpec& spec, bool push) {
  const auto* image = manifest.find_image(image_name);
  if (image == nullptr) {
    return util::make_error(util::ExitCode::usage, fmt::format("function '{}': image '{}' is not defined", spec.function, image_name));
  }
  if (cloud.registry.empty()) return missing_registry(config, cloud, image_name);
  const std::string image_store = cloud::image_store_dir(store.dir());
  auto built = cloud::build_image(manifest, *image, image_store);
  if (!built) return built.error();
  for (const auto& w : built->warnings) ctx.err << "gpurun: warning: image '" << image_name << "': " << w << '\n';
  spec.image_digest = built->digest;
  spec.image_env = built->env;
  spec.image_workdir = built->workdir;
  spec.image_registry = cloud.registry;
  spec.image_repository = image_repository(manifest.app, image->name);
  if (!push) return {};
  auto locations = store.list_image_locations(manifest.app);
  if (!locations) return locations.error();
  for (const auto& l : *locations) {
    if (l.image == image->name && l.digest == built->digest && l.cloud == cloud.name && l.registry == cloud.registry) return {};
  }
  auto pushed = push_image_to_cloud(ctx, config, cloud, manifest.app, *built,
                                    cloud::registry::default_tags(built->digest, ""));
  if (!pushed) return pushed.error();
  return store.record_image_locations({{manifest.app, image->name, built->digest, cloud.name, cloud.registry, spec.image_repository, 0}});
}

std::atomic<int> g_interrupts{0};
extern "C" void on_interrupt(int /*sig*/) { g_interrupts.fetch_add(1); }

int run_function(Context& ctx, const RunOptions& options) {
  int exit_code = 0;
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  auto store = cloud::StateStore::open();
  if (!store) return report(ctx, store.error());

  std::vector<util::Diagnostic> diagnostics;
  auto resolved = cloud::resolve_function(options.target, options.file.empty() ? std::nullopt : std::optional(options.file),
                                          *config, *store, diagnostics);
  if (!resolved) return report(ctx, resolved.error(), diagnostics);
  const auto& manifest = resolved->manifest;
  const auto* function = manifest.find_function(resolved->function);

  auto inputs = plan_inputs(ctx, *config, exit_code);
  if (!inputs) return exit_code;
  inputs->only_functions = {function->name};
  if (!options.cloud.empty()) inputs->cloud_override = options.cloud;
  gpu::GpuRequest request = function->gpu;
  if (!options.gpu.empty()) {
    auto parsed = gpu::parse_gpu_request(options.gpu, config->catalog);
    if (!parsed) return report(ctx, util::make_error(util::ExitCode::usage, fmt::format("--gpu: {}", parsed.error().message)));
    request = *parsed;
    inputs->gpu_override = request;
    inputs->gpu_override_text = options.gpu;
  }
  auto plan = cloud::make_plan(manifest, *config, *inputs);
  if (!plan) return report(ctx, plan.error());
  const auto& placed = plan->functions.front();
  for (const auto& w : plan->warnings) ctx.err << "gpurun: warning: " << w.message << '\n';

  cloud::RunOverrides overrides;
  overrides.args = options.args;
  for (const auto& e : options.env) {
    const auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      return report(ctx, util::make_error(util::ExitCode::usage, fmt::format("--env '{}': write it as KEY=VALUE", e)));
    }
    overrides.env.emplace_back(e.substr(0, eq), e.substr(eq + 1));
  }
  auto backend = cloud::make_backend(placed.backend, config->find_cloud(placed.cloud), &*config);
  if (!backend) return report(ctx, backend.error());
  auto spec = cloud::build_run_spec(manifest, *function, placed, request, *config, *store, overrides);
  if (!spec) return report(ctx, spec.error());
  if (placed.backend != "local" && placed.gpu) {
    // A remote scheduler gets the one GPU slot placement chose on that cloud.
    spec->gpu_alternatives = {{placed.gpu->type, placed.gpu->memory_gb, placed.gpu->count}};
  }
  if (placed.backend != "local" && function->image) {
    const auto* cloud_config = config->find_cloud(placed.cloud);
    if (auto placed_image = place_image(ctx, *config, *cloud_config, manifest, *function->image, *store, *spec, !options.dry_run);
        !placed_image) {
      return report(ctx, placed_image.error());
    }
  }

  cloud::SecretValues secrets;
  const auto environ_entries = cloud::process_environment();
  for (const auto& name : function->secrets) secrets.emplace_back(name, cloud::secret_values(*config, name, environ_entries));

  if (options.dry_run) {
    auto text = (*backend)->dry_run(*spec, secrets);
    if (!text) return report(ctx, text.error());
    ctx.out << *text;
    return 0;
  }

  // Ctrl-C from here on cancels the run (a second one detaches at once).
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);

  auto run = (*backend)->launch(*store, *spec, secrets);
  if (!run) return report(ctx, run.error());
  if (options.detach) {
    if (options.json) {
      ctx.out << nlohmann::json{{"run_id", run->id}, {"status", cloud::to_string(run->status)}}.dump() << '\n';
    } else {
      ctx.out << run->id << '\n';
    }
    return 0;
  }
  ctx.out.flush();
  ctx.err << fmt::format("gpurun: run {} of {} on {}{}\n", run->id, function->name, placed.cloud,
                         placed.gpu ? " (" + spec->gpu_text + ")" : "");

  std::atomic<bool> detach{false};
  bool cancel_sent = false;
  std::string shown_reason;
  const auto queued_since = std::chrono::steady_clock::now();
  auto last_refresh = queued_since - std::chrono::seconds(10);
  WatchOptions watch;
  watch.follow = true;
  watch.render.terminal = options.json ? ctx.err_is_tty : ctx.out_is_tty;
  watch.render.function = function->name;
  watch.out_fd = options.json ? 2 : 1;
  watch.err_fd = 2;
  watch.stop = &detach;
  watch.backend = backend->get();
  watch.on_poll = [&](const cloud::Run& current) {
    if (g_interrupts.load() >= 1 && !cancel_sent) {
      cancel_sent = true;
      if (auto sent = (*backend)->cancel(*store, current); !sent) ctx.err << "\ngpurun: error: " << sent.error().message << '\n';
      ctx.err << fmt::format("\ngpurun: cancelling run {} (press Ctrl-C again to detach and leave it running)\n", current.id);
    }
    if (g_interrupts.load() >= 2) detach.store(true);
    if (current.status == cloud::RunStatus::queued && current.status_reason.rfind("waiting", 0) == 0) {
      const auto now = std::chrono::steady_clock::now();
      const auto waited = std::chrono::duration_cast<std::chrono::seconds>(now - queued_since);
      if (ctx.err_is_tty) {
        ctx.err << fmt::format("\r\033[Kgpurun: {}, queued {}", current.status_reason, util::format_duration(waited));
        ctx.err.flush();
        shown_reason = current.status_reason;
      } else if (current.status_reason != shown_reason || now - last_refresh >= std::chrono::seconds(30)) {
        ctx.err << fmt::format("gpurun: {}, queued {}\n", current.status_reason, util::format_duration(waited));
        shown_reason = current.status_reason;
        last_refresh = now;
      }
    } else if (!shown_reason.empty() && ctx.err_is_tty) {
      ctx.err << "\r\033[K";
      ctx.err.flush();
      shown_reason.clear();
    }
  };
  auto final_run = watch_run(*store, run->id, watch);
  if (detach.load() || (!final_run && final_run.error().code == util::ExitCode::cancelled)) {
    ctx.err << fmt::format("gpurun: detached; run {} goes on: follow it with 'gpurun logs -f {}'\n", run->id, run->id);
    return util::to_int(util::ExitCode::cancelled);
  }
  if (!final_run) return report(ctx, final_run.error());
  const int code = cloud::exit_code_of(*final_run);
  if (placed.backend != "local" && final_run->status != cloud::RunStatus::succeeded) {
    ctx.err << fmt::format("gpurun: run {} {}{}\n", final_run->id, cloud::to_string(final_run->status),
                           final_run->status_reason.empty() ? "" : ": " + final_run->status_reason);
  }
  if (options.json) {
    ctx.out << nlohmann::json{{"id", final_run->id}, {"status", cloud::to_string(final_run->status)}, {"exit_code", code}}.dump()
            << '\n';
  }
  return code;
}

}  // namespace

void add_run(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<RunOptions>();
  auto* cmd = root.add_subcommand("run", "Run one function now and stream its logs (exit code = the function's)");
  cmd->add_option("function", options->target, "FUNCTION or APP/FUNCTION")->required()->type_name("FUNCTION");
  cmd->add_option("-f,--file", options->file, "Manifest file (default ./gpurun.yaml, else the deployed app)")->type_name("FILE");
  cmd->add_option("--gpu", options->gpu, "GPU request instead of the manifest's (e.g. A100:40, T4:2, any, none)")->type_name("GPU");
  cmd->add_option("--cloud", options->cloud, "Run on this cloud")->type_name("CLOUD");
  cmd->add_option("--env", options->env, "Set an environment variable (repeatable)")->type_name("KEY=VALUE");
  cmd->add_flag("-d,--detach", options->detach, "Start the run and print its id; do not wait");
  cmd->add_flag("--json", options->json, "Print the result as JSON on stdout (logs go to stderr)");
  cmd->add_flag("--dry-run", options->dry_run, "Print what would be started (e.g. the Slurm batch script and request) and stop");
  cmd->add_option("args", options->args, "Arguments appended to the function's command (after --)")->type_name("ARGS");
  cmd->positionals_at_end(false);
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_function(ctx, *options); }; });
}

}  // namespace gpurun::commands
