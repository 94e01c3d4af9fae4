#include <CLI/CLI.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/table.hpp"
#include "cloud/image_layer.hpp"
#include "cloud/run_builder.hpp"
#include "commands/common.hpp"

namespace gpurun::commands {

namespace {

struct DeployOptions {
  std::string manifest;
  std::string file;
  bool json = false;
};

int run_deploy(Context& ctx, const DeployOptions& options) {
  int exit_code = 0;
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  auto path = manifest_path(options.manifest, options.file);
  if (!path) return report(ctx, path.error());
  auto manifest = load_manifest(ctx, *config, *path, exit_code);
  if (!manifest) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto inputs = plan_inputs(ctx, *config, exit_code);
  if (!inputs) return exit_code;
  auto volumes = store->list_volumes(manifest->app);
  if (!volumes) return report(ctx, volumes.error());
  for (const auto& v : *volumes) inputs->existing_volumes[v.name] = v.cloud;
  auto plan = cloud::make_plan(*manifest, *config, *inputs);
  if (!plan) return report(ctx, plan.error());
  for (const auto& w : plan->warnings) ctx.err << "gpurun: warning: " << w.message << '\n';

  std::ifstream in(*path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const std::string digest = cloud::sha256_digest(text.str());

  // Volumes first: once created they stay in their cloud.
  nlohmann::json volume_json = nlohmann::json::array();
  for (const auto& v : plan->volumes) {
    std::string where;
    if (const auto* cloud = config->find_cloud(v.cloud); cloud != nullptr && cloud->backend == "local") {
      where = cloud::local_volume_path(store->dir(), manifest->app, v.name);
      std::error_code ec;
      std::filesystem::create_directories(where, ec);
      if (ec) return report(ctx, util::make_error(util::ExitCode::backend, fmt::format("cannot create volume '{}' at {}: {}", v.name, where, ec.message())));
    }
    auto recorded = store->ensure_volume(manifest->app, v.name, v.cloud, where);
    if (!recorded) return report(ctx, recorded.error());
    volume_json.push_back({{"name", v.name}, {"cloud", recorded->cloud}, {"path", recorded->path}});
  }

  cloud::Deployment deployment;
  deployment.app = manifest->app;
  deployment.manifest_digest = digest;
  deployment.manifest_path = std::filesystem::absolute(*path).lexically_normal().string();
  deployment.manifest_dir = manifest->dir;
  deployment.plan_json = plan_json(*plan).dump();
  for (const auto& f : manifest->functions) deployment.functions.push_back(f.name);
  // Write the snapshot under a temporary name first so a failed deploy leaves nothing half-written.
  auto version = store->record_deployment(deployment);
  if (!version) return report(ctx, version.error());
  const std::string snapshot = cloud::deployment_snapshot_path(store->dir(), manifest->app, *version);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(snapshot).parent_path(), ec);
  {
    std::ofstream out(snapshot + ".tmp", std::ios::binary | std::ios::trunc);
    out << text.str();
    if (!out) return report(ctx, util::make_error(util::ExitCode::backend, fmt::format("cannot write {}: disk full or not writable", snapshot)));
  }
  std::filesystem::rename(snapshot + ".tmp", snapshot, ec);
  if (ec) return report(ctx, util::make_error(util::ExitCode::backend, fmt::format("cannot write {}: {}", snapshot, ec.message())));

  if (options.json) {
    nlohmann::json out = plan_json(*plan);
    out["version"] = *version;
    out["digest"] = digest;
    out["volumes"] = volume_json;
    ctx.out << out.dump(2) << '\n';
  } else {
    print_plan(ctx, *plan);
    ctx.err << fmt::format("gpurun: deployed {} version {} ({} function{}); run one with 'gpurun run FUNCTION' from any directory\n",
                           manifest->app, *version, manifest->functions.size(), manifest->functions.size() == 1 ? "" : "s");
  }
  return 0;
}

struct DeploymentsOptions {
  bool all = false;
  bool json = false;
};

int run_deployments(Context& ctx, const DeploymentsOptions& options) {
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
  cli::Table table({"APP", "VERSION", "FUNCTIONS", "DIGEST", "DEPLOYED", "MANIFEST"});
  for (const auto& d : *list) {
    table.add({d.app, std::to_string(d.version), std::to_string(d.functions.size()), d.manifest_digest.substr(7, 12),
               cloud::format_iso8601(d.created_at), d.manifest_path});
  }
  ctx.out << table.render();
  return 0;
}

}  // namespace

void add_deploy(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<DeployOptions>();
  auto* cmd = root.add_subcommand("deploy", "Validate, place and record an app so its functions run from anywhere");
  cmd->add_option("manifest", options->manifest, "Manifest file (default ./gpurun.yaml)")->type_name("MANIFEST");
  cmd->add_option("-f,--file", options->file, "Manifest file (same as the positional argument)")->type_name("FILE");
  cmd->add_flag("--json", options->json, "Print the deployment as JSON on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_deploy(ctx, *options); }; });
}

void add_deployments(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<DeploymentsOptions>();
  auto* cmd = root.add_subcommand("deployments", "List deployed apps (--all: every version)");
  cmd->add_flag("-a,--all", options->all, "Every version, not only the newest");
  cmd->add_flag("--json", options->json, "Print as JSON on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_deployments(ctx, *options); }; });
}

}  // namespace gpurun::commands
