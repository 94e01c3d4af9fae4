#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <ctime>
#include <thread>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cloud/backend/registry.hpp"
#include "cloud/flows/run_flow.hpp"
#include "cloud/plan/run_builder.hpp"
#include "commands/common.hpp"
#include "commands/dry_run.hpp"
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

std::atomic<int> g_interrupts{0};
extern "C" void on_interrupt(int /*sig*/) { g_interrupts.fetch_add(1); }

// The run's --env and words after `--`; a malformed --env is a usage error.
util::Result<cloud::RunOverrides> overrides_of(const RunOptions& options) {
  cloud::RunOverrides overrides;
  overrides.args = options.args;
  for (const auto& e : options.env) {
    const auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      return util::make_error(util::ExitCode::usage, fmt::format("--env '{}': write it as KEY=VALUE", e));
    }
    overrides.env.emplace_back(e.substr(0, eq), e.substr(eq + 1));
  }
  return overrides;
}

// A function placed on one cloud, with the backend that runs it and its (prepared) spec.
struct PlannedRun {
  cloud::PlacedFunction placed;
  std::unique_ptr<cloud::Backend> backend;
  cloud::RunSpec spec;
  std::string choice;  // why run time took this GPU and cloud (a fallback list), or empty
};

// The run-time choice among a GPU function's placements: the first that can start now on its
// cloud (capacity from each cloud's backend; one that cannot be asked counts as unknown).
cloud::RunTimeChoice choose_placement(Context& ctx, const cloud::Config& config, cloud::StateStore& store,
                                      const std::vector<cloud::PlacedFunction>& candidates) {
  return cloud::choose_at_run_time(candidates, [&](const std::string& name) {
    const auto placed = std::find_if(candidates.begin(), candidates.end(), [&](const auto& c) { return c.cloud == name; });
    auto backend = cloud::make_backend(placed->backend, config.find_cloud(name), &config);
    if (!backend) return cloud::Capacity{};
    auto capacity = (*backend)->capacity(store);
    if (!capacity) {
      ctx.err << fmt::format("gpurun: warning: cannot learn the free GPUs of {}: {}\n", name, capacity.error().message);
      return cloud::Capacity{};
    }
    return *capacity;
  });
}

// Plans `function` alone (with --gpu/--cloud) and builds its spec; pure but for the GPU probe.
// A deployed function runs on the cloud its deployment placed it on (`deployed_cloud`) unless --cloud
// or --gpu says otherwise.
std::optional<PlannedRun> plan_run(Context& ctx, const RunOptions& options, const cloud::Config& config, cloud::StateStore& store,
                                   const manifest::Manifest& manifest, const manifest::Function& function,
                                   const std::string& deployed_cloud, int& exit_code) {
  auto inputs = plan_inputs(ctx, config, exit_code);
  if (!inputs) return std::nullopt;
  inputs->only_functions = {function.name};
  if (!options.cloud.empty()) {
    inputs->cloud_override = options.cloud;
  } else if (options.gpu.empty() && !deployed_cloud.empty() && config.find_cloud(deployed_cloud) != nullptr) {
    inputs->cloud_override = deployed_cloud;
  }
  gpu::GpuRequest request = function.gpu;
  auto fail = [&](const util::Error& error) {
    exit_code = report(ctx, error);
    return std::nullopt;
  };
  if (!options.gpu.empty()) {
    auto parsed = gpu::parse_gpu_request(options.gpu, config.catalog);
    if (!parsed) return fail(util::Error{util::ExitCode::usage, fmt::format("--gpu: {}", parsed.error().message)});
    request = *parsed;
    inputs->gpu_override = request;
    inputs->gpu_override_text = options.gpu;
  }
  auto plan = cloud::make_plan(manifest, config, *inputs);
  if (!plan) return fail(plan.error());
  for (const auto& w : plan->warnings) ctx.err << "gpurun: warning: " << w.message << '\n';
  cloud::PlacedFunction placed = plan->functions.front();
  std::string choice;
  // Run time may take a later alternative, on a cloud that holds the function's existing volumes.
  cloud::PlanInputs run_time = *inputs;
  if (auto volumes = store.list_volumes(manifest.app)) {
    for (const auto& v : *volumes) run_time.existing_volumes[v.name] = v.cloud;
  }
  const auto candidates = cloud::placement_candidates(function, config, run_time);
  if (candidates.size() > 1) {
    const auto chosen = choose_placement(ctx, config, store, candidates);
    placed = candidates[chosen.index];
    choice = chosen.why;
  }
  auto overrides = overrides_of(options);
  if (!overrides) return fail(overrides.error());
  auto backend = cloud::make_backend(placed.backend, config.find_cloud(placed.cloud), &config);
  if (!backend) return fail(backend.error());
  auto spec = cloud::build_run_spec(manifest, function, placed, request, config, *overrides);
  if (!spec) return fail(spec.error());
  return PlannedRun{placed, std::move(backend).value(), std::move(spec).value(), choice};
}

// "12:03:10": a wall-clock time of today, local time.
std::string clock_time(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm local{};
  ::localtime_r(&seconds, &local);
  return fmt::format("{:02}:{:02}:{:02}", local.tm_hour, local.tm_min, local.tm_sec);
}

// What happens to a run whose cancel was asked for after `run` stops waiting (second Ctrl-C):
// the cancel goes on; when SIGTERM was sent, SIGKILL follows at a time the backend knows.
std::string stopped_waiting_line(cloud::StateStore& store, cloud::Backend& backend, const cloud::Run& launched) {
  cloud::Run run = launched;
  cloud::StopProgress progress;
  // The supervisor sends SIGTERM within ~50 ms of the request: give it that long to say when.
  for (int i = 0; i < 10; ++i) {
    if (auto fresh = backend.refresh(store, run)) run = *fresh;
    if (cloud::is_terminal(run.status)) {
      return fmt::format("stopped waiting; run {} ended ({})", run.id, cloud::to_string(run.status));
    }
    progress = backend.stop_progress(store, run);
    if (progress.kill_at_ms || run.status != cloud::RunStatus::running) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::string next = progress.kill_at_ms
                               ? fmt::format("; SIGKILL at {} if it still runs", clock_time(*progress.kill_at_ms))
                               : std::string();
  return fmt::format("stopped waiting; the cancel of run {} continues in the background{} ('gpurun cancel --force {}' "
                     "kills it now, 'gpurun wait {}' waits for it)",
                     run.id, next, run.id, run.id);
}

int run_function(Context& ctx, const RunOptions& options) {
  ctx.workload_exit_codes = true;
  ctx.json_errors = options.json && !options.dry_run;
  int exit_code = 0;
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  auto store = cloud::StateStore::open();
  if (!store) return report(ctx, store.error());

  // 1. Resolve: which manifest the function comes from.
  std::vector<util::Diagnostic> diagnostics;
  auto resolved = cloud::resolve_function(options.target, options.file.empty() ? std::nullopt : std::optional(options.file),
                                          *config, *store, diagnostics);
  if (!resolved) return report(ctx, resolved.error(), diagnostics);
  const auto& manifest = resolved->manifest;
  const auto* function = manifest.find_function(resolved->function);

  // 2. Plan (pure): where it runs and its spec.
  const std::string deployed_cloud = resolved->deployment ? cloud::deployed_cloud_of(*resolved->deployment, function->name) : "";
  auto planned = plan_run(ctx, options, *config, *store, manifest, *function, deployed_cloud, exit_code);
  if (!planned) return exit_code;
  auto& backend = planned->backend;
  auto& spec = planned->spec;
  const auto& placed = planned->placed;

  // 3. Prepare: the backend gets its volumes and image ready (nothing is created for --dry-run).
  cloud::PrepareContext prepare{*store, *config, manifest, push_progress(ctx),
                                [&ctx](const std::string& w) { ctx.err << "gpurun: warning: " << w << '\n'; },
                                options.dry_run, {}};
  if (resolved->deployment) prepare.frozen_images = cloud::frozen_images_of(*resolved->deployment);
  auto secret_values = cloud::secret_values_of(*config, function->secrets);
  if (!secret_values) return report(ctx, secret_values.error());
  const cloud::SecretValues& secrets = *secret_values;
  if (auto prepared = cloud::prepare_run(prepare, *backend, placed, spec); !prepared) return report(ctx, prepared.error());

  // Which GPU and cloud run time took from a fallback list, and why.
  if (!planned->choice.empty()) ctx.err << "gpurun: GPU: " << planned->choice << '\n';
  if (options.dry_run) {
    auto text = backend->dry_run(spec, secrets);
    if (!text) return report(ctx, text.error());
    ctx.out << dry_run_summary(spec, secrets) << '\n' << *text;
    return 0;
  }

  // 4. Launch, then follow.
  // Ctrl-C from here on cancels the run (a second one detaches at once).
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);

  auto run = cloud::launch_run(*backend, *store, *config, spec, secrets,
                               [&ctx](const std::string& w) { ctx.err << "gpurun: warning: " << w << '\n'; });
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
  const std::string job = backend->remote_id(*run);
  ctx.err << fmt::format("gpurun: run {} of {} on {}{}{}\n", run->id, function->name, placed.cloud,
                         placed.gpu ? " (" + spec.gpu_text + ")" : "", job.empty() ? "" : ", job " + job);

  std::atomic<bool> detach{false};
  bool cancel_sent = false;
  WaitingLine waiting(ctx.err, ctx.err_is_tty);
  WatchOptions watch;
  watch.follow = true;
  watch.render.terminal = options.json ? ctx.err_is_tty : ctx.out_is_tty;
  watch.render.function = function->name;
  watch.out_fd = options.json ? 2 : 1;
  watch.err_fd = 2;
  watch.stop = &detach;
  watch.backend = backend.get();
  watch.explain_end = true;
  watch.on_poll = [&](const cloud::Run& current) {
    if (g_interrupts.load() >= 1 && !cancel_sent) {
      cancel_sent = true;
      waiting.clear();
      if (auto sent = backend->cancel(*store, current); !sent) ctx.err << "\ngpurun: error: " << sent.error().message << '\n';
      ctx.err << fmt::format("\ngpurun: cancelling run {} (Ctrl-C again stops waiting; the cancel goes on)\n", current.id);
    }
    if (g_interrupts.load() >= 2) detach.store(true);
    waiting.update(current);
  };
  watch.before_output = [&] { waiting.clear(); };
  auto final_run = watch_run(*store, run->id, watch);
  if (detach.load() || (!final_run && final_run.error().code == util::ExitCode::cancelled)) {
    ctx.err << "gpurun: " << stopped_waiting_line(*store, *backend, *run) << '\n';
    return util::to_int(util::ExitCode::cancelled);
  }
  if (!final_run) return report(ctx, final_run.error());
  const int code = cloud::exit_code_of(*final_run);
  if (options.json) {
    ctx.out << result_json(*final_run, code).dump() << '\n';
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
