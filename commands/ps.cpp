#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands/table.hpp"
#include "cloud/backend/registry.hpp"
#include "commands/common.hpp"
#include "commands/completion_kinds.hpp"
#include "commands/watch.hpp"
#include "util/clock.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

struct PsOptions {
  bool all = false;
  bool json = false;
  std::string app;
  std::string status;
  int limit = -1;  // -1: none given
};

// `ps --all` shows this many runs unless --limit says otherwise.
constexpr std::size_t default_all_limit = 50;

// The state's filter for `options`; an unknown --status is a usage error.
util::Result<cloud::RunFilter> run_filter(const PsOptions& options) {
  cloud::RunFilter filter;
  filter.all = options.all;
  filter.app = options.app;
  if (!options.status.empty()) {
    filter.status = cloud::parse_run_status(options.status);
    if (!filter.status) {
      return util::make_error(util::ExitCode::usage,
                              fmt::format("--status '{}': not a run status; use one of queued, running, succeeded, failed, "
                                          "cancelled, timeout, lost, preempted",
                                          options.status));
    }
  }
  if (options.limit >= 0) {
    filter.limit = static_cast<std::size_t>(options.limit);
  } else if (options.all || filter.status) {
    filter.limit = default_all_limit;
  }
  return filter;
}

int run_ps(Context& ctx, const PsOptions& options) {
  int exit_code = 0;
  // Like every command: a missing --config FILE or $GPURUN_CONFIG, or a broken config, is refused.
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  auto filter = run_filter(options);
  if (!filter) return report(ctx, filter.error());
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto runs = store->list_runs(*filter);
  if (!runs) return report(ctx, runs.error());
  std::int64_t more = 0;
  if (filter->limit && runs->size() == *filter->limit) {
    auto total = store->count_runs(*filter);
    if (!total) return report(ctx, total.error());
    more = *total - static_cast<std::int64_t>(runs->size());
  }
  if (more > 0) {
    ctx.err << fmt::format("gpurun: {} more run{} not shown; use --limit N (or --app, --status) to see more\n", more,
                           more == 1 ? "" : "s");
  }
  RunBackends backends(std::move(*config));
  backends.refresh_active(*store, *runs, [&ctx](const std::string& w) { ctx.err << "gpurun: warning: " << w << '\n'; });
  std::vector<std::string> job_ids;
  for (const auto& r : *runs) {
    auto backend = backends.of(r);
    job_ids.push_back(backend ? (*backend)->remote_id(r) : std::string());
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
  if (runs->empty() && !options.all && !filter->status && options.app.empty()) {
    ctx.err << "gpurun: no active runs; 'gpurun ps --all' shows ended ones too\n";
  } else if (runs->empty() && (filter->status || !options.app.empty())) {
    ctx.err << "gpurun: no runs match\n";
  }
  return 0;
}

}  // namespace

void add_ps(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<PsOptions>();
  auto* cmd = root.add_subcommand("ps", "List active runs (--all: every run), newest first");
  cmd->add_flag("-a,--all", options->all, "Include runs that ended");
  cmd->add_flag("--json", options->json, "Print as JSON on stdout");
  complete_as(cmd->add_option("--app", options->app, "Only runs of this app"), ValueKind::app);
  cmd->add_option("--status", options->status, "Only runs with this status (any status, not only active ones)")
      ->check(CLI::IsMember({"queued", "running", "succeeded", "failed", "cancelled", "timeout", "lost", "preempted"}));
  cmd->add_option("--limit", options->limit, fmt::format("At most N runs (default with --all or --status: {})", default_all_limit))
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_ps(ctx, *options); }; });
}

}  // namespace gpurun::commands
