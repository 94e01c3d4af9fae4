#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/table.hpp"
#include "cloud/image_layer.hpp"
#include "cloud/image_store.hpp"
#include "cloud/registry.hpp"
#include "cloud/run_builder.hpp"
#include "commands/common.hpp"
#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

struct DeployOptions {
  ManifestArgs args;
  bool json = false;
};

std::string short_digest(const std::string& digest) { return digest.substr(0, std::min<std::size_t>(digest.size(), 19)); }

// Puts each image where the plan says it runs: the local cloud uses the local image store,
// other clouds get it pushed to their registry. Fills `locations` and `push_json`.
util::Result<void> push_images(Context& ctx, const cloud::Config& config, const manifest::Manifest& manifest,
                               const cloud::Plan& plan, std::map<std::string, cloud::BuiltImage>& built,
                               const std::string& image_store, int version, std::vector<cloud::ImageLocation>& locations,
                               nlohmann::json& push_json) {
  auto idle_timeout = cloud::registry::idle_timeout_from_env();
  if (!idle_timeout) return idle_timeout.error();
  for (const auto& placed : plan.images) {
    for (const auto& cloud_name : placed.clouds) {
      const auto* cloud = config.find_cloud(cloud_name);
      if (cloud != nullptr && cloud->backend != "local" && cloud->registry.empty()) {
        return util::make_error(util::ExitCode::usage,
                                fmt::format("image '{}' is used on cloud '{}', which has no registry to push it to; add "
                                            "'registry: HOST[:PORT]' to cloud '{}' in {}",
                                            placed.name, cloud_name, cloud_name,
                                            config.path.empty() ? std::string("the config") : config.path));
      }
    }
  }
  for (const auto& placed : plan.images) {
    auto& image = built.at(placed.name);
    for (const auto& cloud_name : placed.clouds) {
      const auto* cloud = config.find_cloud(cloud_name);
      if (cloud == nullptr) continue;
      nlohmann::json entry = {{"image", placed.name}, {"cloud", cloud_name}, {"digest", image.digest}};
      if (cloud->backend == "local") {
        // The local cloud runs images from the local store: it needs the base layers there.
        if (auto fetched = cloud::fetch_base_layers(image, image_store); !fetched) return fetched.error();
        locations.push_back({manifest.app, placed.name, image.digest, cloud_name, "", "local", 0});
        entry.update({{"registry", nullptr}, {"repository", nullptr}, {"bytes_uploaded", 0}, {"blobs_uploaded", 0},
                      {"blobs_skipped", image.blobs.size()}, {"blobs_mounted", 0}});
        push_json.push_back(entry);
        continue;
      }
      cloud::registry::Options options;
      options.idle_timeout = *idle_timeout;
      options.credentials = cloud::registry::find_credentials(cloud->registry);
      const std::string label = fmt::format("{} -> {}", placed.name, cloud_name);
      if (ctx.err_is_tty) {
        auto last = std::make_shared<std::chrono::steady_clock::time_point>();
        options.on_progress = [&ctx, label, last](const std::string& digest, std::uint64_t sent, std::uint64_t total) {
          const auto now = std::chrono::steady_clock::now();
          if (now - *last < std::chrono::milliseconds(100) && sent < total) return;
          *last = now;
          ctx.err << fmt::format("\r\033[Kgpurun: {}: {} {} / {}", label, short_digest(digest), util::format_size(sent),
                                 util::format_size(total));
          ctx.err.flush();
        };
      }
      auto on_blob = [&](const cloud::oci::Descriptor& blob, cloud::registry::BlobOutcome::How how, std::uint64_t bytes) {
        std::string what = how == cloud::registry::BlobOutcome::How::uploaded ? "uploaded " + util::format_size(bytes)
                           : how == cloud::registry::BlobOutcome::How::mounted ? std::string("mounted")
                                                                                : std::string("already there");
        ctx.err << fmt::format("{}gpurun: {}: {} ({}) {}\n", ctx.err_is_tty ? "\r\033[K" : "", label, short_digest(blob.digest),
                               util::format_size(blob.size), what);
      };
      cloud::registry::Client client(cloud->registry, options);
      const std::string repository = util::to_lower(manifest.app) + "/" + util::to_lower(placed.name);
      const auto tags = cloud::registry::default_tags(image.digest, "v" + std::to_string(version));
      auto report_push = cloud::push_built_image(client, image, repository, tags, options, on_blob);
      if (!report_push) {
        std::string message = report_push.error().message;
        if (message.find("username and password") != std::string::npos) {
          message += " (GPURUN_REGISTRY_USER and GPURUN_REGISTRY_PASSWORD, or an 'auths' entry for " + cloud->registry +
                     " in ~/.docker/config.json)";
        }
        return util::make_error(report_push.error().code,
                                fmt::format("pushing image '{}' to cloud '{}' (registry {}, repository {}) failed: {}; nothing "
                                            "was recorded",
                                            placed.name, cloud_name, cloud->registry, repository, message));
      }
      ctx.err << fmt::format("gpurun: image {} pushed to {}/{}:{} ({} uploaded, {} blob{} already there, {} mounted)\n",
                             placed.name, cloud->registry, repository, tags.back(), util::format_size(report_push->bytes_uploaded),
                             report_push->blobs_skipped, report_push->blobs_skipped == 1 ? "" : "s", report_push->blobs_mounted);
      locations.push_back({manifest.app, placed.name, image.digest, cloud_name, cloud->registry, repository, 0});
      entry.update({{"registry", cloud->registry}, {"repository", repository}, {"tags", tags},
                    {"bytes_uploaded", report_push->bytes_uploaded}, {"blobs_uploaded", report_push->blobs_uploaded},
                    {"blobs_skipped", report_push->blobs_skipped}, {"blobs_mounted", report_push->blobs_mounted}});
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
  for (const auto& image : manifest->images) {
    auto made = cloud::build_image(*manifest, image, image_store, base_options);
    if (!made) return report(ctx, made.error());
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
  if (auto recorded = store->record_image_locations(locations); !recorded) return report(ctx, recorded.error());
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
