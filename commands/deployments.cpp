#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands/table.hpp"
#include "commands/common.hpp"
#include "commands/deployments.hpp"

namespace gpurun::commands {

namespace {

struct DeploymentsOptions {
  bool all = false;
  bool json = false;
};

}  // namespace

int show_deployments(Context& ctx, bool all, bool json) {
  DeploymentsOptions options{all, json};
  int exit_code = 0;
  // Like every command: a missing --config FILE or $GPURUN_CONFIG, or a broken config, is refused.
  if (!load_config(ctx, exit_code)) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto list = store->list_deployments(options.all);
  if (!list) return report(ctx, list.error());
  if (options.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& d : *list) {
      out.push_back({{"app", d.app},
                     {"version", d.version},
                     {"digest", d.manifest_digest},
                     {"manifest", d.manifest_path},
                     {"functions", d.functions},
                     {"created_at", cloud::format_iso8601(d.created_at)}});
    }
    ctx.out << out.dump(2) << '\n';
    return 0;
  }
  Table table({"APP", "VERSION", "FUNCTIONS", "DIGEST", "DEPLOYED", "MANIFEST"});
  for (const auto& d : *list) {
    table.add({d.app, std::to_string(d.version), std::to_string(d.functions.size()), d.manifest_digest.substr(7, 12),
               cloud::format_iso8601(d.created_at), d.manifest_path});
  }
  ctx.out << table.render();
  return 0;
}

void add_deployments(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<DeploymentsOptions>();
  auto* cmd = root.add_subcommand("deployments", "List deployed apps (--all: every version); the same as app list");
  cmd->add_flag("-a,--all", options->all, "Every version, not only the newest");
  cmd->add_flag("--json", options->json, "Print as JSON on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return show_deployments(ctx, options->all, options->json); }; });
}

}  // namespace gpurun::commands
