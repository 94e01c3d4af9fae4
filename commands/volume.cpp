// `gpurun volume ls|rm|get|put`: the volumes deploy and run created, where their backend keeps
// them (a directory this machine reaches: the local state dir, a Slurm cluster's shared filesystem).

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cloud/plan/run_spec.hpp"
#include "commands/common.hpp"
#include "commands/confirm.hpp"
#include "commands/table.hpp"
#include "util/strings.hpp"

namespace gpurun::commands {

namespace {

namespace fs = std::filesystem;

struct VolumeOptions {
  std::string volume;  // [APP/]NAME
  std::string path;    // inside the volume (get: source; put: target)
  std::string local;   // on this machine (get: target; put: source)
  bool json = false;
  bool yes = false;
};

// The volume named `[APP/]NAME`: a name alone must be unique across apps.
util::Result<cloud::Volume> find_volume(cloud::StateStore& store, const std::string& target) {
  std::string app, name = target;
  if (const auto slash = target.find('/'); slash != std::string::npos) {
    app = target.substr(0, slash);
    name = target.substr(slash + 1);
  }
  auto volumes = store.list_volumes(app);
  if (!volumes) return volumes.error();
  std::vector<cloud::Volume> matches;
  std::vector<std::string> all;
  for (const auto& v : *volumes) {
    all.push_back(v.app + "/" + v.name);
    if (v.name == name) matches.push_back(v);
  }
  if (matches.size() == 1) return matches.front();
  if (matches.size() > 1) {
    std::vector<std::string> names;
    for (const auto& v : matches) names.push_back(v.app + "/" + v.name);
    return util::make_error(util::ExitCode::usage,
                            fmt::format("volume '{}' is in several apps; name one: {}", name, util::join(names, ", ")));
  }
  return util::make_error(util::ExitCode::usage,
                          all.empty() ? fmt::format("volume '{}' not found; no volumes yet (deploy or run creates them)", target)
                                      : fmt::format("volume '{}' not found; volumes: {}", target, util::join(all, ", ")));
}

// The volume's directory, when this machine reaches it.
util::Result<fs::path> reachable_dir(const cloud::Volume& v) {
  std::error_code ec;
  if (fs::is_directory(v.path, ec)) return fs::path(v.path);
  return util::make_error(util::ExitCode::backend,
                          fmt::format("volume '{}/{}' lives on cloud '{}' at {}, which this machine cannot reach; run "
                                      "gpurun where that path is mounted (e.g. the cluster's login node)",
                                      v.app, v.name, v.cloud, v.path));
}

// `inside` (relative to the volume's root, '/' allowed in front) below `root`; '..' is refused.
util::Result<fs::path> inside_volume(const fs::path& root, const std::string& inside) {
  fs::path relative = fs::path(inside).relative_path().lexically_normal();
  for (const auto& part : relative) {
    if (part == "..") {
      return util::make_error(util::ExitCode::usage, fmt::format("'{}': a path inside a volume may not contain '..'", inside));
    }
  }
  return relative.empty() || relative == "." ? root : root / relative;
}

util::Result<void> copy_tree(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::exists(from, ec)) return util::make_error(util::ExitCode::usage, fmt::format("{}: no such file or directory", from.string()));
  if (to.has_parent_path()) fs::create_directories(to.parent_path(), ec);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing | fs::copy_options::copy_symlinks, ec);
  if (ec) return util::make_error(util::ExitCode::backend, fmt::format("cannot copy {} to {}: {}", from.string(), to.string(), ec.message()));
  return {};
}

int run_ls(Context& ctx, const VolumeOptions& options) {
  int exit_code = 0;
  if (!load_config(ctx, exit_code)) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto volumes = store->list_volumes();
  if (!volumes) return report(ctx, volumes.error());
  nlohmann::json out = nlohmann::json::array();
  Table table({"APP", "VOLUME", "CLOUD", "WHERE"});
  for (const auto& v : *volumes) {
    out.push_back({{"name", v.name}, {"app", v.app}, {"cloud", v.cloud}, {"where", v.path},
                   {"created_at", cloud::format_iso8601(v.created_at)}});
    table.add({v.app, v.name, v.cloud, v.path});
  }
  ctx.out << (options.json ? out.dump(2) + "\n" : table.render());
  return 0;
}

// An error when an active run of the volume's app mounts it.
util::Result<void> check_unused(cloud::StateStore& store, const cloud::Volume& v) {
  auto runs = store.list_runs(false);
  if (!runs) return runs.error();
  for (const auto& run : *runs) {
    if (run.app != v.app) continue;
    auto spec = cloud::run_spec_from_json(run.spec_json);
    if (!spec) continue;
    for (const auto& mount : spec->mounts) {
      if (mount.volume == v.name) {
        return util::make_error(util::ExitCode::usage, fmt::format("volume '{}/{}' is mounted by active run {}; cancel it "
                                                                   "first ('gpurun cancel {}')",
                                                                   v.app, v.name, run.id, run.id));
      }
    }
  }
  return {};
}

int run_rm(Context& ctx, const VolumeOptions& options) {
  int exit_code = 0;
  if (!load_config(ctx, exit_code)) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto v = find_volume(*store, options.volume);
  if (!v) return report(ctx, v.error());
  if (auto unused = check_unused(*store, *v); !unused) return report(ctx, unused.error());
  auto dir = reachable_dir(*v);
  std::error_code ec;
  if (!dir && fs::exists(v->path, ec)) return report(ctx, dir.error());
  auto go = confirmed(ctx, options.yes, fmt::format("volume '{}/{}' and every file in it ({})", v->app, v->name, v->path),
                      "gpurun volume rm");
  if (!go) return report(ctx, go.error());
  if (!*go) {
    ctx.err << "gpurun: nothing deleted\n";
    return 1;
  }
  fs::remove_all(v->path, ec);
  if (ec) return report(ctx, util::Error{util::ExitCode::backend, fmt::format("cannot remove {}: {}", v->path, ec.message())});
  if (auto forgotten = store->forget_volume(v->app, v->name); !forgotten) return report(ctx, forgotten.error());
  ctx.err << fmt::format("gpurun: removed volume {}/{} ({})\n", v->app, v->name, v->path);
  return 0;
}

// get: PATH in the volume -> LOCAL (default: its name in the current directory);
// put: LOCAL -> PATH in the volume (default: its name at the volume's root).
int run_copy(Context& ctx, const VolumeOptions& options, bool get) {
  int exit_code = 0;
  if (!load_config(ctx, exit_code)) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto v = find_volume(*store, options.volume);
  if (!v) return report(ctx, v.error());
  auto root = reachable_dir(*v);
  if (!root) return report(ctx, root.error());
  const std::string inside = get ? options.path : (options.path.empty() ? fs::path(options.local).filename().string() : options.path);
  auto in_volume = inside_volume(*root, inside);
  if (!in_volume) return report(ctx, in_volume.error());
  fs::path local = options.local;
  if (get && local.empty()) local = in_volume->filename().empty() ? fs::path(v->name) : in_volume->filename();
  auto copied = get ? copy_tree(*in_volume, local) : copy_tree(local, *in_volume);
  if (!copied) return report(ctx, copied.error());
  ctx.err << fmt::format("gpurun: copied {} to {}\n", get ? in_volume->string() : local.string(),
                         get ? local.string() : in_volume->string());
  return 0;
}

}  // namespace

void add_volume(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<VolumeOptions>();
  auto* volume = root.add_subcommand("volume", "Volumes: list, remove, copy files in and out");
  volume->require_subcommand(1);
  auto* ls = volume->add_subcommand("ls", "List volumes: app, cloud and where each lives");
  ls->add_flag("--json", options->json, "Print as JSON on stdout");
  ls->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_ls(ctx, *options); }; });
  auto* rm = volume->add_subcommand("rm", "Remove a volume and its files");
  rm->add_option("volume", options->volume, "[APP/]VOLUME")->required()->type_name("VOLUME");
  rm->add_flag("-y,--yes", options->yes, "Do not ask");
  rm->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_rm(ctx, *options); }; });
  auto* get = volume->add_subcommand("get", "Copy a file or directory out of a volume");
  get->add_option("volume", options->volume, "[APP/]VOLUME")->required()->type_name("VOLUME");
  get->add_option("path", options->path, "Path inside the volume ('/' for all of it)")->required()->type_name("PATH");
  get->add_option("local", options->local, "Where to put it (default: its name here)")->type_name("FILE");
  get->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_copy(ctx, *options, true); }; });
  auto* put = volume->add_subcommand("put", "Copy a file or directory into a volume");
  put->add_option("volume", options->volume, "[APP/]VOLUME")->required()->type_name("VOLUME");
  put->add_option("local", options->local, "The file or directory to copy")->required()->type_name("FILE");
  put->add_option("path", options->path, "Path inside the volume (default: its name at the root)")->type_name("PATH");
  put->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_copy(ctx, *options, false); }; });
}

}  // namespace gpurun::commands
