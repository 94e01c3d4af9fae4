#include "cloud/backend/backend.hpp"

#include <filesystem>
#include <fmt/format.h>

#include "cloud/images/registry.hpp"
#include "cloud/images/stored_image.hpp"

namespace gpurun::cloud {

bool Backend::reaches_volume(const std::string& state_dir, const Volume& volume) const {
  auto where = volume_path(state_dir, volume.app, volume.name);
  return where && *where == volume.path;
}

std::vector<std::string> Backend::run_files(const StateStore& store, const Run& run) const {
  return {run_dir(store.dir(), run.id)};
}

util::Error unreachable_volume_error(const Volume& volume, const std::string& function, const std::string& cloud) {
  return util::Error{util::ExitCode::usage,
                     fmt::format("function '{}' runs on cloud '{}' but mounts volume '{}', which lives on cloud '{}' ({}) "
                                 "where '{}' cannot reach it; add 'cloud: {}' to the function, or move the volume: copy "
                                 "its files out ('gpurun volume get {}/{} / DIR'), remove it ('gpurun volume rm {}/{}') "
                                 "and deploy again",
                                 function, cloud, volume.name, volume.cloud, volume.path, cloud, volume.cloud, volume.app,
                                 volume.name, volume.app, volume.name)};
}

util::Result<BuiltImage> image_for_run(PrepareContext& ctx, const manifest::Image& image) {
  const std::string store_dir = image_store_dir(ctx.store.dir());
  if (auto frozen = ctx.frozen_images.find(image.name); frozen != ctx.frozen_images.end()) {
    return load_stored_image(store_dir, image.name, frozen->second);
  }
  auto built = build_image(ctx.manifest, image, store_dir);
  if (!built) return built.error();
  for (const auto& w : built->warnings) {
    if (ctx.warn) ctx.warn(fmt::format("image '{}': {}", image.name, w));
  }
  return built;
}

util::Result<std::vector<Run>> Backend::refresh_many(StateStore& store, std::span<const Run> runs) {
  std::vector<Run> fresh;
  fresh.reserve(runs.size());
  for (const auto& run : runs) {
    auto now = refresh(store, run);
    if (!now) return now.error();
    fresh.push_back(std::move(*now));
  }
  return fresh;
}

util::Result<Capacity> Backend::capacity(StateStore& /*store*/) {
  return Capacity{false, {}, "this backend does not report free GPUs"};
}

util::Result<std::string> Backend::prepare_volume(PrepareContext& ctx, const RunSpec& spec, const std::string& volume,
                                                  const std::optional<Volume>& /*existing*/) {
  auto where = volume_path(ctx.store.dir(), spec.app, volume);
  if (!where || ctx.dry_run) return where;
  std::error_code ec;
  std::filesystem::create_directories(*where, ec);
  if (ec) {
    return util::make_error(util::ExitCode::backend, fmt::format("cannot create volume '{}' at {}: {}", volume, *where, ec.message()));
  }
  return where;
}

util::Result<DiscoveredOffers> Backend::discover_offers() {
  return util::make_error(util::ExitCode::usage,
                          fmt::format("the {} backend cannot list its GPUs; declare them with 'gpus:' in the cloud", name()));
}

util::Result<void> Backend::forget_remote(const Run& /*run*/) { return {}; }

util::Result<void> prepare_volumes(PrepareContext& ctx, Backend& backend, RunSpec& spec) {
  for (auto& mount : spec.mounts) {
    auto existing = ctx.store.get_volume(spec.app, mount.volume);
    if (!existing) return existing.error();
    if (*existing && !backend.reaches_volume(ctx.store.dir(), **existing)) {
      return unreachable_volume_error(**existing, spec.function, spec.cloud);
    }
    auto where = backend.prepare_volume(ctx, spec, mount.volume, *existing);
    if (!where) return where.error();
    mount.host_path = *existing ? (*existing)->path : *where;
    if (ctx.dry_run) continue;
    auto recorded = ctx.store.ensure_volume(spec.app, mount.volume, spec.cloud, *where);
    if (!recorded) return recorded.error();
    mount.host_path = recorded->path;
  }
  return {};
}

int exit_code_of(const Run& run) {
  switch (run.status) {
    case RunStatus::succeeded: return 0;
    case RunStatus::timeout: return util::to_int(util::ExitCode::timeout);
    case RunStatus::cancelled: return util::to_int(util::ExitCode::cancelled);
    case RunStatus::lost: return util::to_int(util::ExitCode::backend);
    case RunStatus::failed: return run.exit_code.value_or(1);
    case RunStatus::preempted: return util::to_int(util::ExitCode::backend);
    case RunStatus::queued:
    case RunStatus::running: break;
  }
  return util::to_int(util::ExitCode::backend);
}

util::Error missing_registry_error(const Config& config, const CloudConfig& cloud, const std::string& image) {
  return util::Error{util::ExitCode::usage,
                     fmt::format("image '{}' is used on cloud '{}', which has no registry to push it to; add "
                                 "'registry: http(s)://HOST[:PORT]' to cloud '{}' in {}",
                                 image, cloud.name, cloud.name, config.path.empty() ? std::string("the config") : config.path)};
}

util::Result<void> prepare_registry_image(PrepareContext& ctx, const Backend& backend, const CloudConfig& cloud, RunSpec& spec) {
  const auto* image = ctx.manifest.find_image(spec.image);
  if (image == nullptr) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("function '{}': image '{}' is not defined", spec.function, spec.image));
  }
  return prepare_registry_image(ctx, backend, cloud, spec, *image);
}

util::Result<void> prepare_registry_image(PrepareContext& ctx, const Backend& backend, const CloudConfig& cloud, RunSpec& spec,
                                          const manifest::Image& image) {
  if (auto target = backend.check_image_target(ctx.config, image.name); !target) return target.error();
  auto built = image_for_run(ctx, image);
  if (!built) return built.error();
  spec.image_digest = built->digest;
  spec.image_env = built->env;
  spec.image_workdir = built->workdir;
  spec.image_registry = cloud.registry;
  spec.image_repository = image_repository(ctx.manifest.app, image.name);
  if (ctx.dry_run) return {};
  auto locations = ctx.store.list_image_locations(ctx.manifest.app);
  if (!locations) return locations.error();
  for (const auto& l : *locations) {
    if (l.image == image.name && l.digest == built->digest && l.cloud == cloud.name && l.registry == cloud.registry) return {};
  }
  auto pushed = push_image({cloud.name, cloud.registry, spec.image_repository}, *built,
                           registry::default_tags(built->digest, ""), ctx.progress);
  if (!pushed) return pushed.error();
  return ctx.store.record_image_locations(
      {{ctx.manifest.app, image.name, built->digest, cloud.name, cloud.registry, spec.image_repository, 0}});
}

util::Result<ImagePlacement> place_registry_image(PrepareContext& ctx, const CloudConfig& cloud, BuiltImage& image, int version) {
  ImagePlacement placement;
  const std::string repository = image_repository(ctx.manifest.app, image.name);
  placement.tags = registry::default_tags(image.digest, "v" + std::to_string(version));
  auto pushed = push_image({cloud.name, cloud.registry, repository}, image, placement.tags, ctx.progress);
  if (!pushed) return pushed.error();
  placement.report = *pushed;
  placement.location = {ctx.manifest.app, image.name, image.digest, cloud.name, cloud.registry, repository, 0};
  return placement;
}

}  // namespace gpurun::cloud
