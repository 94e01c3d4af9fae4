#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands/table.hpp"
#include "cloud/backend/registry.hpp"
#include "commands/common.hpp"
#include "commands/watch.hpp"
#include "util/clock.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

struct CancelOptions {
  std::vector<std::string> runs;
  bool force = false;
};

// "still running 3s after SIGTERM; SIGKILL at 10s": what a cancel waits for, once SIGTERM was sent.
std::optional<std::string> stop_wait_text(const cloud::StopProgress& progress) {
  if (!progress.term_sent_ms || !progress.kill_at_ms) return std::nullopt;
  const auto since = util::now_unix_ms() - *progress.term_sent_ms;
  if (since < 1000) return std::nullopt;
  const auto grace = *progress.kill_at_ms - *progress.term_sent_ms;
  return fmt::format("still running {} after SIGTERM; SIGKILL at {}", util::format_duration(std::chrono::seconds(since / 1000)),
                     util::format_duration(std::chrono::seconds(grace / 1000)));
}

// Waits for a cancelled run to end; from 1 s after SIGTERM on, says what it waits for (a live line
// on a terminal, else once). Returns the run as last seen.
cloud::Run wait_until_cancelled(Context& ctx, cloud::StateStore& store, cloud::Backend& backend, cloud::Run current) {
  std::string shown;
  while (!cloud::is_terminal(current.status)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto fresh = backend.refresh(store, current);
    if (!fresh) break;
    current = *fresh;
    if (cloud::is_terminal(current.status)) continue;
    const auto text = stop_wait_text(backend.stop_progress(store, current));
    if (!text || (!ctx.err_is_tty && !shown.empty()) || *text == shown) continue;
    const std::string line = fmt::format("gpurun: run {} {} ('gpurun cancel --force {}' kills it now)", current.id, *text, current.id);
    ctx.err << (ctx.err_is_tty ? "\r\033[K" + line : line + "\n");
    ctx.err.flush();
    shown = *text;
  }
  if (ctx.err_is_tty && !shown.empty()) ctx.err << "\r\033[K";
  return current;
}

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
    auto run = find_run(*store, id);
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
    auto sent = options.force ? (*backend)->kill(*store, *run) : (*backend)->cancel(*store, *run);
    if (!sent) {
      worst = report(ctx, sent.error());
      continue;
    }
    // The supervisor stops the workload (SIGTERM, then SIGKILL after its grace period; --force: SIGKILL).
    const cloud::Run current = wait_until_cancelled(ctx, *store, **backend, *run);
    ctx.err << fmt::format("gpurun: run {} {}\n", current.id, cloud::to_string(current.status));
  }
  return worst;
}

}  // namespace

void add_cancel(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<CancelOptions>();
  auto* cmd = root.add_subcommand("cancel", "Stop runs: SIGTERM, then SIGKILL after a grace period; frees their GPUs");
  cmd->add_option("runs", options->runs, "Run ids (or unique prefixes; @last: the newest run)")->required()->type_name("RUN");
  cmd->add_flag("--force", options->force, "SIGKILL the workload now instead of SIGTERM and a grace period");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_cancel(ctx, *options); }; });
}

}  // namespace gpurun::commands
