// gpurun host-volume (hidden): the volume side of `backend: ssh`. Makes volume VOLUME of APP where
// this host's local backend keeps it under the state dir --state-dir (the host-wide lease dir:
// <dir>/volumes/APP/VOLUME), records it there and prints {"path"}. Made before: unchanged.

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cloud/backend/registry.hpp"
#include "commands/common.hpp"

namespace gpurun::commands {

namespace {

struct HostVolumeOptions {
  std::string state_dir;
  std::string app;
  std::string volume;
};

// An error unless `name` is one path component (no '/', not "." or "..").
util::Result<void> check_name(const std::string& what, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || name.find('\0') != std::string::npos) {
    return util::make_error(util::ExitCode::usage, fmt::format("host-volume: {} '{}' is not a name", what, name));
  }
  return {};
}

int run_host_volume(Context& ctx, const HostVolumeOptions& options) {
  if (auto ok = check_name("app", options.app); !ok) return report(ctx, ok.error());
  if (auto ok = check_name("volume", options.volume); !ok) return report(ctx, ok.error());
  auto store = cloud::StateStore::open(options.state_dir);
  if (!store) return report(ctx, store.error());
  auto backend = cloud::make_backend("local", nullptr);
  if (!backend) return report(ctx, backend.error());
  auto where = (*backend)->volume_path(store->dir(), options.app, options.volume);
  if (!where) return report(ctx, where.error());
  auto recorded = store->ensure_volume(options.app, options.volume, "local", *where);
  if (!recorded) return report(ctx, recorded.error());
  std::error_code ec;
  std::filesystem::create_directories(recorded->path, ec);
  if (ec) {
    return report(ctx, util::Error{util::ExitCode::backend, fmt::format("cannot create volume '{}' at {}: {}", options.volume,
                                                                        recorded->path, ec.message())});
  }
  ctx.out << nlohmann::json{{"path", recorded->path}}.dump() << '\n';
  return 0;
}

}  // namespace

void add_host_volume(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<HostVolumeOptions>();
  auto* cmd = root.add_subcommand("host-volume", "Make a volume in a host's state dir (used by gpurun's ssh backend)");
  cmd->group("");  // hidden: the ssh backend calls it on the host
  cmd->add_option("--state-dir", options->state_dir, "The host-wide state (lease) directory")->required();
  cmd->add_option("app", options->app, "The app")->required();
  cmd->add_option("volume", options->volume, "The volume")->required();
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_host_volume(ctx, *options); }; });
}

}  // namespace gpurun::commands
