#include <CLI/CLI.hpp>

#include "cloud/monitor/monitor.hpp"
#include "cloud/state/state.hpp"
#include "commands/common.hpp"

namespace gpurun::commands {

namespace {

// The state dir's run monitor (cloud/monitor): started by launchers, exits when idle.
int run_monitor_command(Context& ctx) {
  return cloud::run_monitor(cloud::default_state_dir(), ctx.global.config_path, cloud::MonitorOptions{});
}

}  // namespace

void add_monitor(CLI::App& root, Context& ctx) {
  auto* cmd = root.add_subcommand("monitor", "Keep the state directory's remote runs current (started by gpurun itself)");
  cmd->group("");  // hidden: launchers start it on demand
  cmd->callback([&ctx] { ctx.action = [&ctx] { return run_monitor_command(ctx); }; });
}

}  // namespace gpurun::commands
