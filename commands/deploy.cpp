#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/table.hpp"
#include "cloud/images/image_store.hpp"
#include "cloud/images/registry.hpp"
#include "cloud/plan/run_builder.hpp"
#include "commands/common.hpp"
#include "util/files.hpp"
#include "util/sha256.hpp"
#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

struct DeployOptions {
  ManifestArgs args;
  bool json = false;
};

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// Puts each image where the plan says it runs: the local cloud uses the local image store,
// other clouds get it pushed to their registry. Fills `locations` and `push_json`.
util::Result<void> push_images(Context& ctx, const cloud::Config& config, const manifest::Manifest& manifest,
                               const cloud::Plan& plan, std::map<std::string, cloud::BuiltImage>& built,
                               const std::string& image_store, int version, std::vector<cloud::ImageLocation>& locations,
                               nlohmann::json& push_json) {
  for (const auto& placed : plan.images) {
    for (const auto& cloud_name : placed.clouds) {
      const auto* cloud = config.find_cloud(cloud_name);
      if (cloud != nullptr && cloud->backend != "local" && cloud->registry.empty()) {
        return missing_registry(config, *cloud, placed.name);
      }
    }
  }
  for (const auto& placed : plan.images) {
    auto& image = built.at(placed.name);
    for (const auto& cloud_name : placed.clouds) {
      const auto* cloud = config.find_cloud(cloud_name);
      if (cloud == nullptr) continue;
      nlohmann::json entry = {{"image", placed.name}, {"cloud", cloud_name}, {"digest", image.digest}};
      const auto started = std::chrono::steady_clock::now();
      if (cloud->backend == "local") {
        // The local cloud runs images from the local store: it needs the base layers there.
        if (auto fetched = cloud::fetch_base_layers(image, image_store); !fetched) return fetched.error();
        entry["push_ms"] = ms_since(started);
        locations.push_back({manifest.app, placed.name, image.digest, cloud_name, "", "local", 0});
        entry.update({{"registry", nullptr}, {"repository", nullptr}, {"bytes_uploaded", 0}, {"blobs_uploaded", 0},
                      {"blobs_skipped", image.blobs.size()}, {"blobs_mounted", 0}});
        push_json.push_back(entry);
        continue;
      }
      const std::string repository = image_repository(manifest.app, placed.name);
      const auto tags = cloud::registry::default_tags(image.digest, "v" + std::to_string(version));
      auto pushed = push_image_to_cloud(ctx, config, *cloud, manifest.app, image, tags);
      if (!pushed) return pushed.error();
      entry["push_ms"] = ms_since(started);
      locations.push_back({manifest.app, placed.name, image.digest, cloud_name, cloud->registry, repository, 0});
      entry.update({{"registry", cloud->registry}, {"repository", repository}, {"tags", tags},
                    {"bytes_uploaded", pushed->bytes_uploaded}, {"blobs_uploaded", pushed->blobs_uploaded},
                    {"blobs_skipped", pushed->blobs_skipped}, {"blobs_mounted", pushed->blobs_mounted}});
      push_json.push_back(entry);
    }
  }
  return {};
}

int run_deploy(Context& ctx, const DeployOptions& options) {
  int exit_code = 0;
  auto loaded = load_config_and_manifest(ctx, options.args, exit_code);
  if (!loaded) return exit_code;
  const cloud::Config* config = &loaded->config;
  const manifest::Manifest* manifest = &loaded->manifest;
  const std::string* path = &loaded->path;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto inputs = plan_inputs(ctx, *config, exit_code);
  if (!inputs) return exit_code;
  auto volumes = store->list_volumes(manifest->app);
  if (!volumes) return report(ctx, volumes.error());
  for (const auto& v : *volumes) inputs->existing_volumes[v.name] = v.cloud;
  // Build every image first: its digest tells which clouds already hold it.
  const std::string image_store = cloud::image_store_dir(store->dir());
  std::map<std::string, cloud::BuiltImage> built;
  std::map<std::string, std::string> digests;
  auto idle_timeout = cloud::registry::idle_timeout_from_env();
  if (!idle_timeout) return report(ctx, idle_timeout.error());
  cloud::registry::Options base_options;  // for registry bases
  base_options.idle_timeout = *idle_timeout;
  nlohmann::json build_json = nlohmann::json::array();
  for (const auto& image : manifest->images) {
    const auto started = std::chrono::steady_clock::now();
    auto made = cloud::build_image(*manifest, image, image_store, base_options);
    if (!made) return report(ctx, made.error());
    build_json.push_back({{"image", image.name}, {"digest", made->digest}, {"build_ms", ms_since(started)}});
    for (const auto& w : made->warnings) ctx.err << "gpurun: warning: image '" << image.name << "': " << w << '\n';
    digests[image.name] = made->digest;
    built.emplace(image.name, std::move(made).value());
  }
  auto present = images_present(*store, manifest->app, digests);
  if (!present) return report(ctx, present.error());
  inputs->images_present = *present;
  auto plan = cloud::make_plan(*manifest, *config, *inputs);
  if (!plan) return report(ctx, plan.error());
  for (const auto& w : plan->warnings) ctx.err << "gpurun: warning: " << w.message << '\n';

  auto latest = store->latest_deployment(manifest->app);
  if (!latest) return report(ctx, latest.error());
  const int next_version = *latest ? (*latest)->version + 1 : 1;
  std::vector<cloud::ImageLocation> locations;
  nlohmann::json push_json = nlohmann::json::array();
  auto pushed = push_images(ctx, *config, *manifest, *plan, built, image_store, next_version, locations, push_json);
  if (!pushed) return report(ctx, pushed.error());

  auto text = util::read_file(*path);
  if (!text) return report(ctx, text.error());
  const std::string digest = util::sha256_digest(*text);

  // Volumes first: once created they stay in their cloud.
  nlohmann::json volume_json = nlohmann::json::array();
  for (const auto& v : plan->volumes) {
    auto path_of = cloud::volume_path(config->find_cloud(v.cloud), store->dir(), manifest->app, v.name);
    if (!path_of) return report(ctx, path_of.error());
    const std::string& where = *path_of;
    {
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
  if (auto recorded = store->record_image_locations(locations); !recorded) return report(ctx, recorded.error());
  const std::string snapshot = cloud::deployment_snapshot_path(store->dir(), manifest->app, *version);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(snapshot).parent_path(), ec);
  if (auto written = util::write_file_atomically(snapshot, *text); !written) return report(ctx, written.error());

  if (options.json) {
    nlohmann::json out = plan_json(*plan);
    out["version"] = *version;
    out["digest"] = digest;
    out["volumes"] = volume_json;
    out["image_builds"] = build_json;
    out["image_pushes"] = push_json;
    ctx.out << out.dump(2) << '\n';
  } else {
    print_plan(ctx, *plan);
    ctx.err << fmt::format("gpurun: deployed {} version {} ({} function{}); run one with 'gpurun run FUNCTION' from any directory\n",
                           manifest->app, *version, manifest->functions.size(), manifest->functions.size() == 1 ? "" : "s");
  }
  return 0;
}

}  // namespace

void add_deploy(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<DeployOptions>();
  auto* cmd = root.add_subcommand("deploy", "Validate, place and record an app so its functions run from anywhere");
  add_manifest_args(*cmd, options->args);
  cmd->add_flag("--json", options->json, "Print the deployment as JSON on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_deploy(ctx, *options); }; });
}

}  // namespace gpurun::commands
