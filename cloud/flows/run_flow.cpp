#include "cloud/flows/run_flow.hpp"

#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

#include "cloud/monitor/monitor.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace fs = std::filesystem;

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

util::Result<void> prepare_run(PrepareContext& ctx, Backend& backend, const PlacedFunction& placed, RunSpec& spec) {
  if (auto volumes = prepare_volumes(ctx, backend, spec); !volumes) return volumes.error();
  return backend.prepare_image(ctx, placed, spec);
}

util::Result<SecretValues> secret_values_of(const Config& config, const std::vector<std::string>& names) {
  SecretValues secrets;
  const auto environ_entries = process_environment();
  for (const auto& name : names) {
    auto values = secret_values(config, name, environ_entries);
    for (const auto& [key, value] : values) {
      if (value.empty() || value.size() >= min_secret_bytes) continue;
      return util::make_error(util::ExitCode::backend,
                              fmt::format("{}{}: the value is shorter than {} bytes (not shown); masking it in output "
                                          "would hide ordinary text: set the variable to the full secret",
                                          secret_env_prefix(name), key, min_secret_bytes));
    }
    secrets.emplace_back(name, std::move(values));
  }
  return secrets;
}

util::Result<Run> launch_run(Backend& backend, StateStore& store, const Config& config, const RunSpec& spec,
                             const SecretValues& secrets, const std::function<void(const std::string&)>& warn) {
  auto run = backend.launch(store, spec, secrets);
  if (!run || !backend.remote() || is_terminal(run->status)) return run;
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  MonitorHandover handover{run->id, config.path, secrets};
  if (auto handed = hand_over_to_monitor(store.dir(), handover, ec ? std::string("gpurun") : self.string()); !handed) {
    warn(handed.error().message + "; the run goes on, and `gpurun wait` keeps it current");
  }
  return run;
}

}  // namespace gpurun::cloud
