#include "commands/common.hpp"

#include <CLI/CLI.hpp>

#include <chrono>
#include <fmt/format.h>
#include <memory>

#include "commands/table.hpp"
#include "cloud/backend/registry.hpp"
#include "cloud/images/push.hpp"
#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

// The exit code of a failure of gpurun itself: its own code, or 125 for the commands that return
// a workload's code (a timeout and a cancel keep 124 and 130; 126/127 are the workload's command).
int failure_code(const Context& ctx, util::ExitCode code) {
  if (!ctx.workload_exit_codes) return util::to_int(code);
  switch (code) {
    case util::ExitCode::timeout:
    case util::ExitCode::cancelled:
    case util::ExitCode::not_executable:
    case util::ExitCode::not_found: return util::to_int(code);
    default: return util::to_int(util::ExitCode::backend);
  }
}

// Returns the exit code; with ctx.json_errors also prints the failure as JSON on stdout.
int failed(Context& ctx, const util::Error& error, bool invalid_input) {
  const int code = failure_code(ctx, error.code);
  if (ctx.json_errors) {
    ctx.out << nlohmann::json{{"id", nullptr},
                              {"status", nullptr},
                              {"exit_code", code},
                              {"error", {{"kind", util::failure_kind(error.code, invalid_input)}, {"message", error.message}}}}
                   .dump()
            << '\n';
  }
  return code;
}

}  // namespace

bool returns_workload_code(const std::vector<std::string>& args) {
  std::size_t i = 0;
  while (i < args.size() && args[i].rfind("-", 0) == 0) i += args[i] == "--config" ? 2 : 1;  // gpurun's own options
  if (i >= args.size()) return false;
  const std::string& command = args[i];
  if (command == "run" || command == "wait") return true;
  if (command != "logs") return false;
  for (std::size_t j = i + 1; j < args.size() && args[j] != "--"; ++j) {
    if (args[j] == "-f" || args[j] == "--follow") return true;
  }
  return false;
}

int report(Context& ctx, const util::Error& error) {
  ctx.err << "gpurun: error: " << error.message << '\n';
  return failed(ctx, error, false);
}

int report(Context& ctx, const util::Error& error, const std::vector<util::Diagnostic>& diagnostics) {
  if (!diagnostics.empty()) {
    ctx.err << util::format_diagnostics(diagnostics) << '\n';
    ctx.err << fmt::format("gpurun: {} error{} found\n", diagnostics.size(), diagnostics.size() == 1 ? "" : "s");
    return failed(ctx, error, true);
  }
  return report(ctx, error);
}

std::optional<cloud::Config> load_config(Context& ctx, int& exit_code) {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::load_config(ctx.global.config_path, diagnostics);
  if (!config) {
    exit_code = report(ctx, config.error(), diagnostics);
    return std::nullopt;
  }
  return std::move(config).value();
}

util::Result<std::string> manifest_path(const std::string& positional, const std::string& file_option) {
  if (!positional.empty() && !file_option.empty() && positional != file_option) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("two manifests given ('{}' and -f '{}'); pass one", positional, file_option));
  }
  if (!positional.empty()) return positional;
  if (!file_option.empty()) return file_option;
  return std::string("gpurun.yaml");
}

void add_manifest_args(CLI::App& command, ManifestArgs& args) {
  command.add_option("manifest", args.positional, "Manifest file (default ./gpurun.yaml)")->type_name("MANIFEST");
  command.add_option("-f,--file", args.file, "Manifest file (same as the positional argument)")->type_name("FILE");
}

std::optional<Loaded> load_config_and_manifest(Context& ctx, const ManifestArgs& args, int& exit_code) {
  auto config = load_config(ctx, exit_code);
  if (!config) return std::nullopt;
  auto path = manifest_path(args.positional, args.file);
  if (!path) {
    exit_code = report(ctx, path.error());
    return std::nullopt;
  }
  auto manifest = load_manifest(ctx, *config, *path, exit_code);
  if (!manifest) return std::nullopt;
  return Loaded{std::move(*config), std::move(*manifest), *path};
}

std::optional<manifest::Manifest> load_manifest(Context& ctx, const cloud::Config& config, const std::string& path,
                                                int& exit_code) {
  manifest::ManifestContext context;
  context.catalog = &config.catalog;
  context.clouds = config.cloud_names();
  context.secrets = cloud::known_secret_names(config, cloud::process_environment());
  std::vector<util::Diagnostic> diagnostics;
  auto loaded = manifest::load_manifest(path, context, diagnostics);
  if (!loaded) {
    exit_code = report(ctx, loaded.error(), diagnostics);
    return std::nullopt;
  }
  return std::move(loaded).value();
}

std::optional<cloud::PlanInputs> plan_inputs(Context& ctx, const cloud::Config& config, int& exit_code) {
  auto inventory = cloud::local_inventory(config);
  if (!inventory) {
    exit_code = report(ctx, inventory.error());
    return std::nullopt;
  }
  cloud::PlanInputs inputs;
  inputs.local_offers = inventory->offers;
  if (inventory->source == "none") {
    inputs.local_offers_note = "none found on this machine; declare them with GPURUN_LOCAL_GPUS";
  } else {
    inputs.local_offers_note = fmt::format("from {}", inventory->source);
  }
  return inputs;
}

util::Result<cloud::Backend*> RunBackends::of(const cloud::Run& run) {
  auto it = by_cloud_.find(run.cloud);
  if (it == by_cloud_.end()) {
    auto made = cloud::backend_for(run, config_);
    if (!made) return made.error();
    it = by_cloud_.emplace(run.cloud, std::move(made).value()).first;
  }
  return it->second.get();
}

nlohmann::json run_json(const cloud::Run& run, const std::string& remote_id) {
  auto time = [](const std::optional<std::int64_t>& t) {
    return t ? nlohmann::json(cloud::format_iso8601(*t)) : nlohmann::json(nullptr);
  };
  return {{"id", run.id},
          {"app", run.app},
          {"function", run.function},
          {"cloud", run.cloud},
          {"backend", run.backend},
          {"remote_id", remote_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(remote_id)},
          {"status", cloud::to_string(run.status)},
          {"status_reason", run.status_reason},
          {"exit_code", run.exit_code ? nlohmann::json(*run.exit_code) : nlohmann::json(nullptr)},
          {"gpus", run.gpus},
          {"attempt", run.attempt},
          {"created_at", cloud::format_iso8601(run.created_at)},
          {"started_at", time(run.started_at)},
          {"ended_at", time(run.ended_at)}};
}

// The run as `run --json` and `wait --json` print it; an ended run that gpurun lost (not the
// workload's own failure) carries an "error".
nlohmann::json result_json(const cloud::Run& run, int code) {
  nlohmann::json out{{"id", run.id}, {"status", cloud::to_string(run.status)}, {"exit_code", code}};
  if (run.status == cloud::RunStatus::lost || run.status == cloud::RunStatus::preempted) {
    out["error"] = {{"kind", "backend"}, {"message", run.status_reason}};
  }
  return out;
}

std::string ended_line(const cloud::Run& run, int code) {
  const std::string status(cloud::to_string(run.status));
  std::string what = run.status_reason.empty() ? status : run.status_reason;
  const bool says_status = what.rfind(status, 0) == 0 || (run.status == cloud::RunStatus::timeout && what.rfind("timed out", 0) == 0) ||
                           (run.status == cloud::RunStatus::failed && what.rfind("killed by", 0) == 0);
  if (!says_status) what = status + ": " + what;
  if (what.find("exit code") == std::string::npos) what += fmt::format(" (exit code {})", code);
  return fmt::format("run {} {}", run.id, what);
}

util::Result<std::unique_ptr<cloud::Backend>> run_backend(Context& ctx, const cloud::Run& run) {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::load_config(ctx.global.config_path, diagnostics);
  if (!config) return config.error();
  return cloud::backend_for(run, *config);
}

cloud::Run refreshed_run(Context& ctx, cloud::StateStore& store, const cloud::Run& run, bool quiet) {
  if (cloud::is_terminal(run.status)) return run;
  auto backend = run_backend(ctx, run);
  if (!backend) {
    if (!quiet) ctx.err << "gpurun: warning: cannot refresh run " << run.id << ": " << backend.error().message << '\n';
    return run;
  }
  auto fresh = (*backend)->refresh(store, run);
  if (!fresh) {
    if (!quiet) ctx.err << "gpurun: warning: cannot refresh run " << run.id << ": " << fresh.error().message << '\n';
    return run;
  }
  return *fresh;
}

util::Result<cloud::StateStore> open_store() {
  auto store = cloud::StateStore::open();
  if (!store) return store.error();
  (void)store->reconcile_lost();
  return store;
}

util::Result<std::map<std::string, std::set<std::string>>> images_present(cloud::StateStore& store, const std::string& app,
                                                                          const std::map<std::string, std::string>& digests) {
  auto locations = store.list_image_locations(app);
  if (!locations) return locations.error();
  std::map<std::string, std::set<std::string>> present;
  for (const auto& l : *locations) {
    auto it = digests.find(l.image);
    if (it != digests.end() && it->second == l.digest) present[l.image].insert(l.cloud);
  }
  return present;
}

nlohmann::json plan_json(const cloud::Plan& plan) {
  nlohmann::json out;
  out["app"] = plan.app;
  out["functions"] = nlohmann::json::array();
  for (const auto& f : plan.functions) {
    nlohmann::json j;
    j["name"] = f.name;
    j["cloud"] = f.cloud;
    j["backend"] = f.backend;
    j["gpu_requested"] = f.gpu_requested ? nlohmann::json(*f.gpu_requested) : nlohmann::json(nullptr);
    j["gpu"] = f.gpu ? nlohmann::json{{"type", f.gpu->type}, {"memory_gb", f.gpu->memory_gb}, {"count", f.gpu->count}}
                     : nlohmann::json(nullptr);
    j["image"] = f.image ? nlohmann::json(*f.image) : nlohmann::json(nullptr);
    j["volumes"] = f.volumes;
    out["functions"].push_back(std::move(j));
  }
  out["volumes"] = nlohmann::json::array();
  for (const auto& v : plan.volumes) out["volumes"].push_back({{"name", v.name}, {"cloud", v.cloud}});
  out["images"] = nlohmann::json::array();
  for (const auto& i : plan.images) out["images"].push_back({{"name", i.name}, {"clouds", i.clouds}, {"upload_to", i.upload_to}});
  out["warnings"] = nlohmann::json::array();
  for (const auto& w : plan.warnings) out["warnings"].push_back({{"function", w.function}, {"message", w.message}});
  return out;
}

void print_plan(Context& ctx, const cloud::Plan& plan) {
  Table table({"FUNCTION", "GPU ASKED", "CLOUD", "BACKEND", "GPU", "IMAGE", "VOLUMES"});
  for (const auto& f : plan.functions) {
    table.add({f.name, f.gpu_requested.value_or("-"), f.cloud, f.backend, f.gpu ? gpu::to_string(*f.gpu, true) : "-",
               f.image.value_or("-"), f.volumes.empty() ? "-" : util::join(f.volumes, ",")});
  }
  ctx.out << table.render();
  if (!plan.volumes.empty()) {
    ctx.out << '\n';
    Table volumes({"VOLUME", "CLOUD"});
    for (const auto& v : plan.volumes) volumes.add({v.name, v.existing ? v.cloud + " (created)" : v.cloud});
    ctx.out << volumes.render();
  }
  if (!plan.images.empty()) {
    ctx.out << '\n';
    Table images({"IMAGE", "CLOUDS", "UPLOAD TO"});
    for (const auto& i : plan.images) {
      images.add({i.name, i.clouds.empty() ? "-" : util::join(i.clouds, ","),
                  i.upload_to.empty() ? "-" : util::join(i.upload_to, ",")});
    }
    ctx.out << images.render();
  }
  for (const auto& w : plan.warnings) ctx.err << "gpurun: warning: " << w.message << '\n';
}

std::optional<OpenedRun> open_run(Context& ctx, const std::string& id, int& exit_code) {
  auto store = open_store();
  if (!store) {
    exit_code = report(ctx, store.error());
    return std::nullopt;
  }
  auto run = store->get_run(id);
  if (!run) {
    exit_code = report(ctx, run.error());
    return std::nullopt;
  }
  auto backend = run_backend(ctx, *run);
  if (!backend) {
    exit_code = report(ctx, backend.error());
    return std::nullopt;
  }
  return OpenedRun{std::move(*store), std::move(*run), std::move(*backend)};
}

cloud::PushProgress push_progress(Context& ctx) {
  auto short_digest = [](const std::string& digest) { return digest.substr(0, std::min<std::size_t>(digest.size(), 19)); };
  cloud::PushProgress progress;
  if (ctx.err_is_tty) {
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    progress.on_bytes = [&ctx, last, short_digest](const std::string& label, const std::string& digest, std::uint64_t sent,
                                                   std::uint64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (now - *last < std::chrono::milliseconds(100) && sent < total) return;
      *last = now;
      ctx.err << fmt::format("\r\033[Kgpurun: {}: {} {} / {}", label, short_digest(digest), util::format_size(sent),
                             util::format_size(total));
      ctx.err.flush();
    };
  }
  progress.on_blob = [&ctx, short_digest](const std::string& label, const cloud::oci::Descriptor& blob,
                                          cloud::registry::BlobOutcome::How how, std::uint64_t bytes) {
    std::string what = how == cloud::registry::BlobOutcome::How::uploaded ? "uploaded " + util::format_size(bytes)
                       : how == cloud::registry::BlobOutcome::How::mounted ? std::string("mounted")
                                                                            : std::string("already there");
    ctx.err << fmt::format("{}gpurun: {}: {} ({}) {}\n", ctx.err_is_tty ? "\r\033[K" : "", label, short_digest(blob.digest),
                           util::format_size(blob.size), what);
  };
  progress.on_done = [&ctx](const std::string& line) { ctx.err << "gpurun: " << line << '\n'; };
  return progress;
}

}  // namespace gpurun::commands
