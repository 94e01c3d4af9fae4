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
};

int run_wait(Context& ctx, const WaitOptions& options) {
  int exit_code = 0;
  auto opened = open_run(ctx, options.run, exit_code);
  if (!opened) return exit_code;
  cloud::StateStore* store = &opened->store;
  const cloud::Run* run = &opened->run;
  const std::unique_ptr<cloud::Backend>* backend = &opened->backend;
  const bool remote = (*backend)->remote();
  cloud::Run current = *run;
  auto delay = std::chrono::milliseconds(remote ? 0 : 100);
  while (true) {
    if (remote) {
      auto fresh = (*backend)->refresh(*store, current);
      if (!fresh) return report(ctx, fresh.error());
      delay = fresh->status != current.status || fresh->attempt != current.attempt
                  ? std::chrono::milliseconds(200)
                  : std::min(std::max(delay * 2, std::chrono::milliseconds(200)), std::chrono::milliseconds(1000));
      current = *fresh;
    }
    if (cloud::is_terminal(current.status)) break;
    std::this_thread::sleep_for(delay);
    if (!remote) {
      auto fresh = refresh_local_run(*store, run->id);
      if (!fresh) return report(ctx, fresh.error());
      current = *fresh;
    }
  }
  const int code = cloud::exit_code_of(current);
  if (options.json) {
    ctx.out << nlohmann::json{{"id", current.id}, {"status", cloud::to_string(current.status)}, {"exit_code", code}}.dump() << '\n';
  } else if (current.status != cloud::RunStatus::succeeded) {
    ctx.err << fmt::format("gpurun: run {} {} (exit code {})\n", current.id,
                           current.status_reason.empty() ? std::string(cloud::to_string(current.status)) : current.status_reason, code);
  }
  return code;
}

}  // namespace

void add_wait(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<WaitOptions>();
  auto* cmd = root.add_subcommand("wait", "Wait for a run to end; exit with its exit code");
  cmd->add_option("run", options->run, "Run id (or a unique prefix)")->required()->type_name("RUN");
  cmd->add_flag("--json", options->json, "Print {\"id\", \"status\", \"exit_code\"} on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_wait(ctx, *options); }; });
}

}  // namespace gpurun::commands
