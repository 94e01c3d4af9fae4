#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <fmt/format.h>

#include "commands/common.hpp"
#include "commands/watch.hpp"

namespace gpurun::commands {

namespace {

struct AttachOptions {
  std::string run;
};

std::atomic<bool> g_detach{false};
extern "C" void on_attach_interrupt(int /*sig*/) { g_detach.store(true); }

// Follows the run's logs (from its start) until it ends; Ctrl-C detaches and leaves it running.
int run_attach(Context& ctx, const AttachOptions& options) {
  ctx.workload_exit_codes = true;
  int exit_code = 0;
  // Like every command: a missing --config FILE or $GPURUN_CONFIG, or a broken config, is refused.
  if (!load_config(ctx, exit_code)) return exit_code;
  auto opened = open_run(ctx, options.run, exit_code);
  if (!opened) return exit_code;
  const cloud::Run& run = opened->run;
  struct sigaction action {};
  action.sa_handler = on_attach_interrupt;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  if (!cloud::is_terminal(run.status)) {
    ctx.err << fmt::format("gpurun: attached to run {} of {} on {} ({}); Ctrl-C detaches, the run goes on\n", run.id,
                           run.function, run.cloud, cloud::to_string(run.status));
  }
  WaitingLine waiting(ctx.err, ctx.err_is_tty);
  WatchOptions watch;
  watch.backend = opened->backend.get();
  watch.follow = true;
  watch.render.terminal = ctx.out_is_tty;
  watch.render.function = run.function;
  watch.stop = &g_detach;
  watch.explain_end = true;
  watch.on_poll = [&](const cloud::Run& current) { waiting.update(current); };
  watch.before_output = [&] { waiting.clear(); };
  ctx.out.flush();
  auto watched = watch_run(opened->store, run.id, watch);
  waiting.clear();
  if (g_detach.load() || (!watched && watched.error().code == util::ExitCode::cancelled)) {
    ctx.err << fmt::format("\ngpurun: detached from run {}; it goes on: 'gpurun cancel {}' stops it, 'gpurun attach {}' "
                           "follows it again\n",
                           run.id, run.id, run.id);
    return util::to_int(util::ExitCode::cancelled);
  }
  if (!watched) return report(ctx, watched.error());
  const int code = cloud::exit_code_of(*watched);
  return code;
}

}  // namespace

void add_attach(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<AttachOptions>();
  auto* cmd = root.add_subcommand("attach", "Follow a run's logs live until it ends; exit with its exit code (Ctrl-C detaches)");
  cmd->add_option("run", options->run, "Run id (or a unique prefix; @last: the newest run)")->required()->type_name("RUN");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_attach(ctx, *options); }; });
}

}  // namespace gpurun::commands
