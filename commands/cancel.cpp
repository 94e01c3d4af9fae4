#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands/table.hpp"
#include "cloud/backend/registry.hpp"
#include "commands/common.hpp"
#include "commands/watch.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

struct CancelOptions {
  std::vector<std::string> runs;
};

// A lost run's supervisor is gone but its workload may live on (holding its GPUs): kill that.
int cancel_lost(Context& ctx, cloud::StateStore& store, const cloud::Run& run) {
  auto leftover = store.leftover_workload(run.id);
  if (!leftover) return report(ctx, leftover.error());
  if (!*leftover) {
    ctx.err << fmt::format("gpurun: run {} already ended (lost) and nothing of it runs; nothing to cancel\n", run.id);
    return 0;
  }
  auto backend = run_backend(ctx, run);
  if (!backend) return report(ctx, backend.error());
  if (auto ended = (*backend)->cancel(store, run); !ended) return report(ctx, ended.error());
  ctx.err << fmt::format("gpurun: run {} was lost; killed what was left of its workload (process group {}); its GPUs are free\n",
                         run.id, (*leftover)->pgid);
  return 0;
}

int run_cancel(Context& ctx, const CancelOptions& options) {
  int exit_code = 0;
  // Like every command: a missing --config FILE or $GPURUN_CONFIG, or a broken config, is refused.
  if (!load_config(ctx, exit_code)) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  int worst = 0;
  for (const auto& id : options.runs) {
    auto run = store->get_run(id);
    if (!run) {
      worst = report(ctx, run.error());
      continue;
    }
    *run = refreshed_run(ctx, *store, *run, true);
    if (run->status == cloud::RunStatus::lost) {
      if (const int code = cancel_lost(ctx, *store, *run); code != 0) worst = code;
      continue;
    }
    if (cloud::is_terminal(run->status)) {
      ctx.err << fmt::format("gpurun: run {} already ended ({}); nothing to cancel\n", run->id, cloud::to_string(run->status));
      continue;
    }
    auto backend = run_backend(ctx, *run);
    if (!backend) {
      worst = report(ctx, backend.error());
      continue;
    }
    if (auto sent = (*backend)->cancel(*store, *run); !sent) {
      worst = report(ctx, sent.error());
      continue;
    }
    // The supervisor stops the workload (SIGTERM, then SIGKILL after its grace period).
    cloud::Run current = *run;
    while (!cloud::is_terminal(current.status)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      auto fresh = (*backend)->refresh(*store, current);
      if (!fresh) break;
      current = *fresh;
    }
    ctx.err << fmt::format("gpurun: run {} {}\n", current.id, cloud::to_string(current.status));
  }
  return worst;
}

}  // namespace

void add_cancel(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<CancelOptions>();
  auto* cmd = root.add_subcommand("cancel", "Stop runs: SIGTERM, then SIGKILL after a grace period; frees their GPUs");
  cmd->add_option("runs", options->runs, "Run ids (or unique prefixes)")->required()->type_name("RUN");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_cancel(ctx, *options); }; });
}

}  // namespace gpurun::commands
