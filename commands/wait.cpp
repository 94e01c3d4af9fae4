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

struct WaitOptions {
  std::string run;
  bool json = false;
  std::string timeout;
};

// Polls `run` until it ends (a remote backend is asked, with back-off) or `deadline` passes;
// returns the run as last seen.
util::Result<cloud::Run> wait_for_end(cloud::StateStore& store, cloud::Backend& backend, cloud::Run current,
                                      std::optional<std::chrono::steady_clock::time_point> deadline) {
  const bool remote = backend.remote();
  auto delay = std::chrono::milliseconds(remote ? 0 : 100);
  while (!cloud::is_terminal(current.status)) {
    if (deadline && std::chrono::steady_clock::now() >= *deadline) break;
    if (remote) {
      auto fresh = backend.refresh(store, current);
      if (!fresh) return fresh.error();
      delay = fresh->status != current.status || fresh->attempt != current.attempt
                  ? std::chrono::milliseconds(200)
                  : std::min(std::max(delay * 2, std::chrono::milliseconds(200)), std::chrono::milliseconds(1000));
      current = *fresh;
      if (cloud::is_terminal(current.status)) break;
    }
    auto sleep = delay;
    if (deadline) {
      sleep = std::min(sleep, std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now()));
    }
    if (sleep.count() > 0) std::this_thread::sleep_for(sleep);
    if (!remote) {
      auto fresh = refresh_local_run(store, current.id);
      if (!fresh) return fresh.error();
      current = *fresh;
    }
  }
  return current;
}

int run_wait(Context& ctx, const WaitOptions& options) {
  ctx.workload_exit_codes = true;
  ctx.json_errors = options.json;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (!options.timeout.empty()) {
    auto limit = util::parse_duration(options.timeout);
    if (!limit) {
      return report(ctx, util::make_error(util::ExitCode::usage,
                                          fmt::format("--timeout '{}': not a duration; write it like 30s, 10m or 2h", options.timeout)));
    }
    deadline = std::chrono::steady_clock::now() + *limit;
  }
  int exit_code = 0;
  // Like every command: a missing --config FILE or $GPURUN_CONFIG, or a broken config, is refused.
  if (!load_config(ctx, exit_code)) return exit_code;
  auto opened = open_run(ctx, options.run, exit_code);
  if (!opened) return exit_code;
  auto current = wait_for_end(opened->store, *opened->backend, opened->run, deadline);
  if (!current) return report(ctx, current.error());
  if (!cloud::is_terminal(current->status)) {
    const int code = util::to_int(util::ExitCode::timeout);
    ctx.err << fmt::format("gpurun: run {} is still {} after --timeout {}; it goes on (wait again, or 'gpurun cancel {}')\n",
                           current->id, cloud::to_string(current->status), options.timeout, current->id);
    if (options.json) {
      ctx.out << nlohmann::json{{"id", current->id}, {"status", cloud::to_string(current->status)}, {"exit_code", code},
                                {"error", {{"kind", "timeout"}, {"message", "--timeout " + options.timeout + " expired"}}}}
                     .dump()
              << '\n';
    }
    return code;
  }
  const int code = cloud::exit_code_of(*current);
  if (options.json) {
    ctx.out << result_json(*current, code).dump() << '\n';
  } else if (current->status != cloud::RunStatus::succeeded) {
    ctx.err << "gpurun: " << ended_line(*current, code) << '\n';
  }
  return code;
}

}  // namespace

void add_wait(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<WaitOptions>();
  auto* cmd = root.add_subcommand("wait", "Wait for a run to end; exit with its exit code");
  cmd->add_option("run", options->run, "Run id (or a unique prefix; @last: the newest run)")->required()->type_name("RUN");
  cmd->add_flag("--json", options->json, "Print {\"id\", \"status\", \"exit_code\"} on stdout (and \"error\" when gpurun failed)");
  cmd->add_option("--timeout", options->timeout, "Stop waiting after this long (exit 124; the run goes on)")->type_name("DURATION");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_wait(ctx, *options); }; });
}

}  // namespace gpurun::commands
