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

struct LogsOptions {
  std::string run;
  bool follow = false;
  std::string since;
  int tail = -1;
  bool timestamps = false;
};

int run_logs(Context& ctx, const LogsOptions& options) {
  ctx.workload_exit_codes = options.follow;
  int exit_code = 0;
  // Like every command: a missing --config FILE or $GPURUN_CONFIG, or a broken config, is refused.
  if (!load_config(ctx, exit_code)) return exit_code;
  auto opened = open_run(ctx, options.run, exit_code);
  if (!opened) return exit_code;
  cloud::StateStore* store = &opened->store;
  const cloud::Run* run = &opened->run;
  const std::unique_ptr<cloud::Backend>* backend = &opened->backend;
  WatchOptions watch;
  watch.backend = backend->get();
  watch.follow = options.follow;
  watch.render.terminal = ctx.out_is_tty;
  watch.render.function = run->function;
  watch.render.timestamps = options.timestamps;
  if (!options.since.empty()) {
    auto since = util::parse_duration(options.since);
    if (!since) {
      return report(ctx, util::make_error(util::ExitCode::usage,
                                          fmt::format("--since '{}': not a duration; write it like 30s, 10m or 2h", options.since)));
    }
    watch.render.since_unix_ms = util::now_unix_ms() - since->count();
  }
  if (options.tail >= 0) watch.tail = static_cast<std::size_t>(options.tail);
  ctx.out.flush();
  auto watched = watch_run(*store, run->id, watch);
  if (!watched) return report(ctx, watched.error());
  // Following ends with the run: exit with its code, as `run` and `wait` do.
  return options.follow ? cloud::exit_code_of(*watched) : 0;
}

}  // namespace

void add_logs(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<LogsOptions>();
  auto* cmd = root.add_subcommand("logs", "Print a run's logs (-f: follow them live until it ends)");
  cmd->add_option("run", options->run, "Run id (or a unique prefix; @last: the newest run)")->required()->type_name("RUN");
  cmd->add_flag("-f,--follow", options->follow, "Keep printing new lines until the run ends");
  cmd->add_option("--since", options->since, "Only lines newer than this (e.g. 10m)")->type_name("DURATION");
  cmd->add_option("--tail", options->tail, "Only the last N lines")->type_name("N")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--timestamps", options->timestamps, "Prefix each line with its UTC time");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_logs(ctx, *options); }; });
}

}  // namespace gpurun::commands
