#include "cloud/flows/run_flow.hpp"

#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
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
    return ResolvedFunction{std::move(m), function, std::move(source), std::nullopt};
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
  auto resolved = check(std::move(m).value(), fmt::format("deployed app '{}' (version {})", matches.front().app, matches.front().version));
  if (resolved) resolved->deployment = matches.front();
  return resolved;
}

std::map<std::string, std::string> frozen_images_of(const Deployment& deployment) {
  std::map<std::string, std::string> frozen;
  for (const auto& image : deployment.images) frozen[image.image] = image.digest;
  return frozen;
}

std::string deployed_cloud_of(const Deployment& deployment, const std::string& function) {
  auto plan = nlohmann::json::parse(deployment.plan_json, nullptr, false);
  if (!plan.is_object() || !plan.contains("functions") || !plan["functions"].is_array()) return {};
  for (const auto& f : plan["functions"]) {
    if (f.is_object() && f.value("name", "") == function) return f.value("cloud", "");
  }
  return {};
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

namespace {

// How many GPUs like `slot` (same type, ignoring case, and memory) are free and in all.
std::pair<int, int> free_and_total(const Capacity& capacity, const gpu::GpuSlot& slot) {
  int free = 0;
  int total = 0;
  for (const auto& g : capacity.gpus) {
    if (!util::iequals(g.type, slot.type) || (slot.memory_gb != 0 && g.memory_gb != 0 && g.memory_gb != slot.memory_gb)) continue;
    free += g.free;
    total += g.total;
  }
  return {free, total};
}

// "all 2 busy on gcp", "only 1 of 4 free on gcp", "none on gcp": why `slot` cannot start there.
std::string busy_text(int free, int total, const std::string& cloud) {
  if (total == 0) return "none on " + cloud;
  if (free == 0) return fmt::format("all {} busy on {}", total, cloud);
  return fmt::format("only {} of {} free on {}", free, total, cloud);
}

}  // namespace

RunTimeChoice choose_at_run_time(const std::vector<PlacedFunction>& candidates,
                                 const std::function<Capacity(const std::string& cloud)>& capacity_of) {
  RunTimeChoice choice;
  std::map<std::string, Capacity> known;
  std::vector<std::string> skipped;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const auto& c = candidates[i];
    auto it = known.find(c.cloud);
    if (it == known.end()) it = known.emplace(c.cloud, capacity_of(c.cloud)).first;
    const std::string slot = gpu::to_string(*c.gpu, true);
    if (!it->second.known) {
      choice = {i, true, ""};
      skipped.push_back(fmt::format("took {} on {} (its free GPUs are unknown)", slot, c.cloud));
      choice.why = util::join(skipped, "; ");
      return choice;
    }
    const auto [free, total] = free_and_total(it->second, *c.gpu);
    if (free >= c.gpu->count) {
      choice = {i, true, ""};
      skipped.push_back(fmt::format("took {} on {}", slot, c.cloud));
      choice.why = util::join(skipped, "; ");
      return choice;
    }
    skipped.push_back(fmt::format("{}: {}", slot, busy_text(free, total, c.cloud)));
  }
  if (!candidates.empty()) {
    skipped.push_back(fmt::format("none can start now: queued for {} on {}", gpu::to_string(*candidates.front().gpu, true),
                                  candidates.front().cloud));
  }
  choice.why = util::join(skipped, "; ");
  return choice;
}

}  // namespace gpurun::cloud
