#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <tuple>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands/table.hpp"
#include "cloud/images/image_store.hpp"
#include "cloud/images/registry.hpp"
#include "cloud/images/stored_image.hpp"
#include "cloud/plan/run_builder.hpp"
#include "cloud/backend/registry.hpp"
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

// The backend of each cloud the plan uses, by cloud name.
using Backends = std::map<std::string, std::unique_ptr<cloud::Backend>>;

util::Result<Backends> backends_of(const cloud::Config& config, const cloud::Plan& plan) {
  Backends backends;
  auto add = [&](const std::string& name) -> util::Result<void> {
    if (backends.count(name) != 0) return {};
    const auto* cloud = config.find_cloud(name);
    if (cloud == nullptr) return {};
    auto backend = cloud::make_backend(cloud->backend, cloud, &config);
    if (!backend) return backend.error();
    backends.emplace(name, std::move(backend).value());
    return {};
  };
  for (const auto& f : plan.functions) {
    if (auto added = add(f.cloud); !added) return added.error();
  }
  for (const auto& v : plan.volumes) {
    if (auto added = add(v.cloud); !added) return added.error();
  }
  for (const auto& i : plan.images) {
    for (const auto& c : i.clouds) {
      if (auto added = add(c); !added) return added.error();
    }
  }
  return backends;
}

// Builds every image of the manifest into the local store; their digests tell which clouds
// already hold them. Fills `build_json`.
util::Result<std::map<std::string, cloud::BuiltImage>> build_images(Context& ctx, const manifest::Manifest& manifest,
                                                                    const std::string& image_store,
                                                                    nlohmann::json& build_json) {
  auto idle_timeout = cloud::registry::idle_timeout_from_env();
  if (!idle_timeout) return idle_timeout.error();
  cloud::registry::Options base_options;  // for registry bases
  base_options.idle_timeout = *idle_timeout;
  std::map<std::string, cloud::BuiltImage> built;
  for (const auto& image : manifest.images) {
    const auto started = std::chrono::steady_clock::now();
    auto made = cloud::build_image(manifest, image, image_store, base_options);
    if (!made) return made.error();
    // The deployment must never read the manifest's folder again: base layers move into the store.
    if (auto frozen = cloud::freeze_image(*made, image_store); !frozen) return frozen.error();
    build_json.push_back({{"image", image.name}, {"digest", made->digest}, {"build_ms", ms_since(started)}});
    for (const auto& w : made->warnings) ctx.err << "gpurun: warning: image '" << image.name << "': " << w << '\n';
    built.emplace(image.name, std::move(made).value());
  }
  return built;
}

// Puts each image where the plan says it runs, through that cloud's backend (checked for every
// cloud before the first upload). Fills `locations` and `push_json`.
util::Result<void> place_images(cloud::PrepareContext& prepare, const cloud::Plan& plan, Backends& backends,
                                std::map<std::string, cloud::BuiltImage>& built, int version,
                                std::vector<cloud::ImageLocation>& locations, nlohmann::json& push_json) {
  for (const auto& placed : plan.images) {
    for (const auto& cloud_name : placed.clouds) {
      auto it = backends.find(cloud_name);
      if (it == backends.end()) continue;
      if (auto ok = it->second->check_image_target(prepare.config, placed.name); !ok) return ok.error();
    }
  }
  for (const auto& placed : plan.images) {
    auto& image = built.at(placed.name);
    for (const auto& cloud_name : placed.clouds) {
      auto it = backends.find(cloud_name);
      if (it == backends.end()) continue;
      const auto started = std::chrono::steady_clock::now();
      auto placement = it->second->place_image(prepare, image, version);
      if (!placement) return placement.error();
      placement->location.cloud = cloud_name;
      locations.push_back(placement->location);
      const auto& r = placement->report;
      const auto& l = placement->location;
      nlohmann::json entry = {{"image", placed.name}, {"cloud", cloud_name}, {"digest", image.digest},
                              {"push_ms", ms_since(started)},
                              {"registry", l.registry.empty() ? nlohmann::json(nullptr) : nlohmann::json(l.registry)},
                              {"repository", l.registry.empty() ? nlohmann::json(nullptr) : nlohmann::json(l.repository)},
                              {"bytes_uploaded", r.bytes_uploaded}, {"blobs_uploaded", r.blobs_uploaded},
                              {"blobs_skipped", r.blobs_skipped}, {"blobs_mounted", r.blobs_mounted}};
      if (!placement->tags.empty()) entry["tags"] = placement->tags;
      push_json.push_back(entry);
    }
  }
  return {};
}

// Where each planned volume lives (its record, else where its cloud's backend would create it);
// an error when a function that mounts it runs on a cloud whose backend cannot reach it.
util::Result<std::map<std::string, cloud::Volume>> locate_volumes(cloud::StateStore& store, const manifest::Manifest& manifest,
                                                                 const cloud::Plan& plan, const Backends& backends) {
  std::map<std::string, cloud::Volume> located;
  for (const auto& v : plan.volumes) {
    auto it = backends.find(v.cloud);
    if (it == backends.end()) continue;
    auto recorded = store.get_volume(manifest.app, v.name);
    if (!recorded) return recorded.error();
    cloud::Volume volume{manifest.app, v.name, v.cloud, "", 0};
    if (*recorded) {
      volume = **recorded;
    } else {
      auto where = it->second->volume_path(store.dir(), manifest.app, v.name);
      if (!where) return where.error();
      volume.path = *where;
    }
    for (const auto& f : plan.functions) {
      if (f.cloud == volume.cloud || std::find(f.volumes.begin(), f.volumes.end(), v.name) == f.volumes.end()) continue;
      auto user = backends.find(f.cloud);
      if (user != backends.end() && !user->second->reaches_volume(store.dir(), volume)) {
        return cloud::unreachable_volume_error(volume, f.name, f.cloud);
      }
    }
    located.emplace(v.name, volume);
  }
  return located;
}

// Creates each located volume and records it (once created, a volume stays in its cloud); one
// without a path is made where a run first mounts it (its backend's choice). Returns the volumes
// as `deploy --json` shows them.
util::Result<nlohmann::json> create_volumes(cloud::StateStore& store, const std::map<std::string, cloud::Volume>& located) {
  nlohmann::json volume_json = nlohmann::json::array();
  for (const auto& [name, v] : located) {
    if (v.path.empty()) {
      volume_json.push_back({{"name", name}, {"cloud", v.cloud}, {"path", nullptr}});
      continue;
    }
    const std::string* where = &v.path;
    std::error_code ec;
    std::filesystem::create_directories(*where, ec);
    if (ec) {
      return util::make_error(util::ExitCode::backend,
                              fmt::format("cannot create volume '{}' at {}: {}", name, *where, ec.message()));
    }
    auto recorded = store.ensure_volume(v.app, name, v.cloud, *where);
    if (!recorded) return recorded.error();
    volume_json.push_back({{"name", name}, {"cloud", recorded->cloud}, {"path", recorded->path}});
  }
  return volume_json;
}

// Records the deployment and writes its manifest snapshot (under a temporary name first, so a
// failed deploy leaves nothing half-written). Returns the new version.
util::Result<int> record_deployment(cloud::StateStore& store, const cloud::Deployment& deployment, const std::string& text,
                                    const std::vector<cloud::ImageLocation>& locations) {
  auto version = store.record_deployment(deployment);
  if (!version) return version.error();
  if (auto recorded = store.record_image_locations(locations); !recorded) return recorded.error();
  const std::string snapshot = cloud::deployment_snapshot_path(store.dir(), deployment.app, *version);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(snapshot).parent_path(), ec);
  {
    std::ofstream out(snapshot + ".tmp", std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) {
      return util::make_error(util::ExitCode::backend, fmt::format("cannot write {}: disk full or not writable", snapshot));
    }
  }
  std::filesystem::rename(snapshot + ".tmp", snapshot, ec);
  if (ec) return util::make_error(util::ExitCode::backend, fmt::format("cannot write {}: {}", snapshot, ec.message()));
  return version;
}

// The deployment snapshot of this deploy: manifest, plan (without what still needs an upload,
// which changes with every push) and the image digests per cloud.
cloud::Deployment snapshot_of(const Loaded& loaded, const cloud::Plan& plan, const std::string& digest,
                              const std::vector<cloud::ImageLocation>& locations) {
  cloud::Deployment deployment;
  deployment.app = loaded.manifest.app;
  deployment.manifest_digest = digest;
  deployment.manifest_path = std::filesystem::absolute(loaded.path).lexically_normal().string();
  deployment.manifest_dir = loaded.manifest.dir;
  auto json = plan_json(plan);
  json.erase("warnings");
  for (auto& image : json["images"]) image.erase("upload_to");
  for (auto& volume : json["volumes"]) {
    volume.erase("existing");
    volume.erase("reason");
  }
  deployment.plan_json = json.dump();
  for (const auto& f : loaded.manifest.functions) deployment.functions.push_back(f.name);
  deployment.images = locations;
  for (auto& image : deployment.images) {
    image.app.clear();
    image.pushed_at = 0;
  }
  std::sort(deployment.images.begin(), deployment.images.end(), [](const auto& a, const auto& b) {
    return std::tie(a.image, a.cloud) < std::tie(b.image, b.cloud);
  });
  return deployment;
}

// True when `latest` runs exactly what `next` would: same manifest text and folder, plan and
// image digest per cloud.
bool same_snapshot(const cloud::Deployment& latest, const cloud::Deployment& next) {
  auto key = [](const cloud::Deployment& d) {
    nlohmann::json images = nlohmann::json::array();
    for (const auto& i : d.images) images.push_back({i.image, i.digest, i.cloud});
    return d.manifest_digest + "\n" + d.manifest_dir + "\n" + d.plan_json + "\n" + images.dump();
  };
  return key(latest) == key(next);
}

int run_deploy(Context& ctx, const DeployOptions& options) {
  int exit_code = 0;
  auto loaded = load_config_and_manifest(ctx, options.args, exit_code);
  if (!loaded) return exit_code;
  const cloud::Config& config = loaded->config;
  const manifest::Manifest& manifest = loaded->manifest;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto inputs = plan_inputs(ctx, config, exit_code);
  if (!inputs) return exit_code;
  auto volumes = store->list_volumes(manifest.app);
  if (!volumes) return report(ctx, volumes.error());
  for (const auto& v : *volumes) inputs->existing_volumes[v.name] = v.cloud;

  // 1. Build every image: its digest tells which clouds already hold it.
  nlohmann::json build_json = nlohmann::json::array();
  auto built = build_images(ctx, manifest, cloud::image_store_dir(store->dir()), build_json);
  if (!built) return report(ctx, built.error());
  std::map<std::string, std::string> digests;
  for (const auto& [name, image] : *built) digests[name] = image.digest;
  auto present = images_present(*store, manifest.app, digests);
  if (!present) return report(ctx, present.error());
  inputs->images_present = *present;

  // 2. Plan (pure); each warning is printed once, here (not again with the plan's table).
  auto plan = cloud::make_plan(manifest, config, *inputs);
  if (!plan) return report(ctx, plan.error());
  for (const auto& w : plan->warnings) ctx.err << "gpurun: warning: " << w.message << '\n';
  auto backends = backends_of(config, *plan);
  if (!backends) return report(ctx, backends.error());
  auto located = locate_volumes(*store, manifest, *plan, *backends);
  if (!located) return report(ctx, located.error());

  // 3. Prepare: images where they run (tagged with the version they will belong to), then volumes.
  auto latest = store->latest_deployment(manifest.app);
  if (!latest) return report(ctx, latest.error());
  auto text = util::read_file(loaded->path);
  if (!text) return report(ctx, text.error());
  const std::string digest = util::sha256_digest(*text);
  cloud::PrepareContext prepare{*store, config, manifest, push_progress(ctx),
                                [&ctx](const std::string& w) { ctx.err << "gpurun: warning: " << w << '\n'; }, false, {}};
  std::vector<cloud::ImageLocation> locations;
  nlohmann::json push_json = nlohmann::json::array();
  // An unchanged deploy keeps its version: manifest, folder, plan and image digests per cloud are
  // all known before anything is pushed (the images are still put in place, tagged with it).
  std::vector<cloud::ImageLocation> expected;
  for (const auto& placed_image : plan->images) {
    for (const auto& c : placed_image.clouds) {
      if (backends->count(c) != 0) expected.push_back({manifest.app, placed_image.name, digests.at(placed_image.name), c, "", "", 0});
    }
  }
  const bool unchanged = *latest && same_snapshot(**latest, snapshot_of(*loaded, *plan, digest, expected));
  int version = unchanged ? (*latest)->version : (*latest ? (*latest)->version + 1 : 1);
  auto placed = place_images(prepare, *plan, *backends, *built, version, locations, push_json);
  if (!placed) return report(ctx, placed.error());
  auto volume_json = create_volumes(*store, *located);
  if (!volume_json) return report(ctx, volume_json.error());

  // 4. Record the deployment and its snapshot (nothing new when unchanged).
  if (unchanged) {
    if (auto recorded = store->record_image_locations(locations); !recorded) return report(ctx, recorded.error());
  } else {
    auto recorded = record_deployment(*store, snapshot_of(*loaded, *plan, digest, locations), *text, locations);
    if (!recorded) return report(ctx, recorded.error());
    if (*recorded != version) {
      ctx.err << fmt::format("gpurun: warning: another deploy of {} ran at the same time; this one is version {}\n",
                             manifest.app, *recorded);
      version = *recorded;
    }
  }

  if (options.json) {
    nlohmann::json out = plan_json(*plan);
    out["version"] = version;
    out["unchanged"] = unchanged;
    out["digest"] = digest;
    out["volumes"] = *volume_json;
    out["image_builds"] = build_json;
    out["image_pushes"] = push_json;
    ctx.out << out.dump(2) << '\n';
  } else {
    cloud::Plan shown = *plan;
    shown.warnings.clear();
    print_plan(ctx, shown);
    const std::size_t n = manifest.functions.size();
    if (unchanged) {
      ctx.err << fmt::format("gpurun: {} unchanged (v{}): nothing new to deploy\n", manifest.app, version);
    } else {
      ctx.err << fmt::format("gpurun: deployed {} version {} ({} function{}); run one with 'gpurun run FUNCTION' from any directory\n",
                             manifest.app, version, n, n == 1 ? "" : "s");
    }
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
