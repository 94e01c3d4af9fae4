#include "cloud/backend/backend.hpp"

#include <filesystem>
#include <fmt/format.h>

namespace gpurun::cloud {

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

util::Result<void> prepare_volumes(PrepareContext& ctx, const Backend& backend, RunSpec& spec) {
  for (auto& mount : spec.mounts) {
    auto where = backend.volume_path(ctx.store.dir(), spec.app, mount.volume);
    if (!where) return where.error();
    mount.host_path = *where;
    if (ctx.dry_run) continue;
    std::error_code ec;
    std::filesystem::create_directories(*where, ec);
    if (ec) {
      return util::make_error(util::ExitCode::backend,
                              fmt::format("cannot create volume '{}' at {}: {}", mount.volume, *where, ec.message()));
    }
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

}  // namespace gpurun::cloud
