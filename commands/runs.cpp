#include "commands/runs.hpp"

#include <fmt/format.h>

#include "cloud/backend/registry.hpp"
#include "commands/loading.hpp"
#include "commands/report.hpp"

namespace gpurun::commands {

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

}  // namespace gpurun::commands
