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

struct PsOptions {
  bool all = false;
  bool json = false;
};

int run_ps(Context& ctx, const PsOptions& options) {
  int exit_code = 0;
  // Like every command: a missing --config FILE or $GPURUN_CONFIG, or a broken config, is refused.
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto runs = store->list_runs(options.all);
  if (!runs) return report(ctx, runs.error());
  RunBackends backends(std::move(*config));
  std::vector<std::string> job_ids;
  for (auto& r : *runs) {
    auto backend = backends.of(r);
    if (!backend) {
      ctx.err << "gpurun: warning: cannot refresh run " << r.id << ": " << backend.error().message << '\n';
      job_ids.emplace_back();
      continue;
    }
    if (!cloud::is_terminal(r.status)) {
      auto fresh = (*backend)->refresh(*store, r);
      if (fresh) {
        r = *fresh;
      } else {
        ctx.err << "gpurun: warning: cannot refresh run " << r.id << ": " << fresh.error().message << '\n';
      }
    }
    job_ids.push_back((*backend)->remote_id(r));
  }
  if (options.json) {
    nlohmann::json out = nlohmann::json::array();
    for (std::size_t i = 0; i < runs->size(); ++i) out.push_back(run_json((*runs)[i], job_ids[i]));
    ctx.out << out.dump(2) << '\n';
    return 0;
  }
  Table table({"RUN", "APP", "FUNCTION", "CLOUD", "JOB", "STATUS", "EXIT", "GPUS", "ATTEMPT", "AGE"});
  const auto now = util::now_unix_ms();
  for (std::size_t i = 0; i < runs->size(); ++i) {
    const auto& r = (*runs)[i];
    table.add({r.id, r.app, r.function, r.cloud, job_ids[i].empty() ? "-" : job_ids[i], std::string(cloud::to_string(r.status)),
               r.exit_code ? std::to_string(*r.exit_code) : "-", r.gpus.empty() ? "-" : r.gpus, std::to_string(r.attempt),
               util::format_duration(std::chrono::seconds((now - r.created_at) / 1000))});
  }
  ctx.out << table.render();
  if (runs->empty() && !options.all) ctx.err << "gpurun: no active runs; 'gpurun ps --all' shows ended ones too\n";
  return 0;
}

}  // namespace

void add_ps(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<PsOptions>();
  auto* cmd = root.add_subcommand("ps", "List active runs (--all: every run), newest first");
  cmd->add_flag("-a,--all", options->all, "Include runs that ended");
  cmd->add_flag("--json", options->json, "Print as JSON on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_ps(ctx, *options); }; });
}

}  // namespace gpurun::commands
