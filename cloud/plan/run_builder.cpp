#include "cloud/plan/run_builder.hpp"

#include "cloud/images/image_store.hpp"

#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::cloud {

namespace fs = std::filesystem;

std::string deployment_snapshot_path(const std::string& state_dir, const std::string& app, int version) {
  return fmt::format("{}/deployments/{}/v{}.yaml", state_dir, app, version);
}

std::string local_volume_path(const std::string& state_dir, const std::string& app, const std::string& volume) {
  return fmt::format("{}/volumes/{}/{}", state_dir, app, volume);
}

namespace {

manifest::ManifestContext context_of(const Config& config) {
  manifest::ManifestContext context;
  context.catalog = &config.catalog;
  context.clouds = config.cloud_names();
  context.secrets = known_secret_names(config, process_environment());
  return context;
}

util::Result<manifest::Manifest> load_deployed(const Deployment& d, StateStore& store, const Config& config,
                                               std::vector<util::Diagnostic>& diagnostics) {
  const std::string snapshot = deployment_snapshot_path(store.dir(), d.app, d.version);
  std::ifstream in(snapshot, std::ios::binary);
  if (!in) {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("deployed app '{}' (version {}) has no manifest snapshot at {}; deploy it again",
                                        d.app, d.version, snapshot));
  }
  std::stringstream text;
  text << in.rdbuf();
  return manifest::parse_manifest(text.str(), d.manifest_path, context_of(config), diagnostics);
}

}  // namespace

util::Result<ResolvedFunction> resolve_function(const std::string& target, const std::optional<std::string>& file,
                                                const Config& config, StateStore& store,
                                                std::vector<util::Diagnostic>& diagnostics) {
  std::string app;
  std::string function = target;
  if (const auto slash = target.find('/'); slash != std::string::npos) {
    app = target.substr(0, slash);
    function = target.substr(slash + 1);
  }
  if (function.empty()) {
    return util::make_error(util::ExitCode::usage, fmt::format("'{}': name a function (FUNCTION or APP/FUNCTION)", target));
  }
  auto check = [&](manifest::Manifest m, std::string source) -> util::Result<ResolvedFunction> {
    if (!app.empty() && m.app != app) {
      return util::make_error(util::ExitCode::usage, fmt::format("{} is app '{}', not '{}'", source, m.app, app));
    }
    if (m.find_function(function) == nullptr) {
      std::vector<std::string> names;
      for (const auto& f : m.functions) names.push_back(f.name);
      const auto suggestion = util::did_you_mean(function, names);
      return util::make_error(util::ExitCode::usage,
                              suggestion ? fmt::format("{} has no function '{}' (did you mean '{}'?)", source, function, *suggestion)
                                         : fmt::format("{} has no function '{}'; it has: {}", source, function, util::join(names, ", ")));
    }
    return ResolvedFunction{std::move(m), function, std::move(source)};
  };
  if (file) {
    auto m = manifest::load_manifest(*file, context_of(config), diagnostics);
    if (!m) return m.error();
    return check(std::move(m).value(), *file);
  }
  std::error_code ec;
  if (fs::exists("gpurun.yaml", ec)) {
    std::vector<util::Diagnostic> local_diagnostics;
    auto m = manifest::load_manifest("gpurun.yaml", context_of(config), local_diagnostics);
    if (!m) {
      diagnostics.insert(diagnostics.end(), local_diagnostics.begin(), local_diagnostics.end());
      return m.error();
    }
    if ((app.empty() || m->app == app) && m->find_function(function) != nullptr) return check(std::move(m).value(), "gpurun.yaml");
  }
  auto deployed = store.find_function(function);
  if (!deployed) return deployed.error();
  std::vector<Deployment> matches;
  for (const auto& d : *deployed) {
    if (app.empty() || d.app == app) matches.push_back(d);
  }
  if (matches.empty()) {
    if (!app.empty()) {
      return util::make_error(util::ExitCode::usage,
                              fmt::format("no deployed app '{}' has a function '{}'; deploy it with 'gpurun deploy MANIFEST' or pass -f MANIFEST",
                                          app, function));
    }
    return util::make_error(util::ExitCode::usage,
                            fmt::format("function '{}' is not in ./gpurun.yaml nor in any deployed app; pass the manifest with -f FILE or deploy it first",
                                        function));
  }
  if (matches.size() > 1) {
    std::vector<std::string> names;
    for (const auto& d : matches) names.push_back(d.app + "/" + function);
    return util::make_error(util::ExitCode::usage,
                            fmt::format("function '{}' is in several deployed apps; name one: {}", function, util::join(names, ", ")));
  }
  auto m = load_deployed(matches.front(), store, config, diagnostics);
  if (!m) return m.error();
  return check(std::move(m).value(), fmt::format("deployed app '{}' (version {})", matches.front().app, matches.front().version));
}

std::string describe_gpu_request(const gpu::GpuRequest& request, const gpu::Catalog& catalog) {
  std::vector<std::string> parts;
  for (const auto& a : request.alternatives) {
    if (a.max_count || a.memory_range || (a.any && (a.memory_gb || a.max_memory_gb))) {
      parts.push_back(gpu::to_string(a));  // a range: "H100:1..2", "24GB", "A100:40GB+"
      continue;
    }
    if (a.any) {
      parts.push_back(fmt::format("{}x any GPU", a.count));
      continue;
    }
    parts.push_back(fmt::format("{}x {}", a.count, gpu::to_string(gpu::GpuSlot{a.type, gpu::effective_memory_gb(a, catalog), 1}, catalog)));
  }
  return util::join(parts, " or ");
}

util::Result<std::string> volume_path(const CloudConfig* cloud, const std::string& state_dir, const std::string& app,
                                      const std::string& volume) {
  if (cloud == nullptr || cloud->backend == "local") return local_volume_path(state_dir, app, volume);
  std::string dir = cloud->volume_dir;
  if (dir.empty() && !cloud->log_dir.empty()) dir = cloud->log_dir + "/volumes";
  if (dir.empty() || dir[0] != '/') {
    return util::make_error(util::ExitCode::usage, fmt::format("volume '{}' lives on cloud '{}', which has no volume_dir (or "
                                                               "log_dir); set volume_dir to a directory that this machine and "
                                                               "the cluster's nodes share",
                                                               volume, cloud->name));
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return fmt::format("{}/{}/{}", dir, app, volume);
}

util::Result<RunSpec> build_run_spec(const manifest::Manifest& manifest, const manifest::Function& function,
                                     const PlacedFunction& placed, const gpu::GpuRequest& request, const Config& config,
                                     StateStore& store, const RunOverrides& overrides) {
  RunSpec spec;
  spec.app = manifest.app;
  spec.function = function.name;
  spec.cloud = placed.cloud;
  spec.backend = placed.backend;
  if (!function.argv.empty()) {
    spec.argv = function.argv;
    spec.argv.insert(spec.argv.end(), overrides.args.begin(), overrides.args.end());
  } else {
    std::string command = function.shell;
    for (const auto& a : overrides.args) command += " " + util::shell_quote(a);
    spec.argv = {"/bin/sh", "-c", command};
  }
  spec.cwd = manifest.dir;
  spec.env = function.env;
  for (const auto& [k, v] : overrides.env) {
    bool replaced = false;
    for (auto& [ek, ev] : spec.env) {
      if (ek == k) {
        ev = v;
        replaced = true;
      }
    }
    if (!replaced) spec.env.emplace_back(k, v);
  }
  spec.secrets = function.secrets;
  for (const auto& mount : function.volumes) {
    auto where = volume_path(config.find_cloud(placed.cloud), store.dir(), manifest.app, mount.volume);
    if (!where) return where.error();
    const std::string& path = *where;
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) {
      return util::make_error(util::ExitCode::backend,
                              fmt::format("cannot create volume '{}' at {}: {}", mount.volume, path, ec.message()));
    }
    auto recorded = store.ensure_volume(manifest.app, mount.volume, placed.cloud, path);
    if (!recorded) return recorded.error();
    spec.mounts.push_back({recorded->path, mount.path, mount.volume});
  }
  for (const auto& alternative : request.alternatives) {
    for (const auto& concrete : gpu::expand(alternative, config.catalog)) {
      spec.gpu_alternatives.push_back({concrete.type, gpu::effective_memory_gb(concrete, config.catalog), concrete.count,
                                       gpu::max_memory_gb(concrete, config.catalog)});
    }
    if (alternative.any) {  // then any device type with the memory asked, largest count first
      for (int count : gpu::counts_descending(alternative)) {
        spec.gpu_alternatives.push_back({"", alternative.memory_gb.value_or(0), count, alternative.max_memory_gb.value_or(0)});
      }
    }
  }
  spec.gpu_text = describe_gpu_request(request, config.catalog);
  spec.timeout = function.timeout;
  spec.max_retries = function.retries.max_retries;
  spec.backoff = function.retries.backoff;
  spec.initial_delay = function.retries.initial_delay;
  spec.max_delay = function.retries.max_delay;
  if (function.image) {
    const auto* image = manifest.find_image(*function.image);
    if (image == nullptr) {
      return util::make_error(util::ExitCode::usage, fmt::format("function '{}': image '{}' is not defined", function.name, *function.image));
    }
    spec.image = image->name;
    if (placed.backend == "local") {
      const std::string store_dir = image_store_dir(store.dir());
      auto built = build_image(manifest, *image, store_dir);
      if (!built) return built.error();
      auto rootfs = unpack_rootfs(*built, store_dir);
      if (!rootfs) return rootfs.error();
      spec.image_digest = built->digest;
      spec.image_rootfs = *rootfs;
      spec.image_env = built->env;
      spec.image_workdir = built->workdir;
      spec.cwd = built->workdir;
    }
  }
  if (const char* grace = std::getenv("GPURUN_KILL_GRACE")) {
    if (auto d = util::parse_duration(grace)) spec.kill_grace = *d;
  }
  return spec;
}

}  // namespace gpurun::cloud
