#include "cloud/backend/registry.hpp"

#include <fmt/format.h>
#include <map>

#include "cloud/backend/kubernetes/kubernetes_backend.hpp"
#include "cloud/backend/local/local_backend.hpp"
#include "cloud/backend/slurm/slurm_backend.hpp"
#include "cloud/backend/ssh/ssh_backend.hpp"
#include "cloud/backend/ssh/ssh_settings.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

using Factory = util::Result<std::unique_ptr<Backend>> (*)(const CloudConfig* cloud, const Config* config);

// What the registry knows of a backend: how to make it, and its config keys.
struct BackendEntry {
  Factory make;
  BackendKeyParser (*keys)();
};

// Every backend gpurun has, by its `backend:` name.
const std::map<std::string, BackendEntry>& entries() {
  static const std::map<std::string, BackendEntry> map = {
      {"kubernetes", {&make_kubernetes_backend, &kubernetes_config_keys}},
      {"local", {&make_local_backend, &local_config_keys}},
      {"slurm", {&make_slurm_backend, &slurm_config_keys}},
      {"ssh", {&make_ssh_backend, &ssh_config_keys}},
  };
  return map;
}

}  // namespace

std::vector<std::string> backend_names() {
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries()) names.push_back(name);
  return names;
}

const BackendKeyParsers& backend_key_parsers() {
  static const BackendKeyParsers parsers = [] {
    BackendKeyParsers map;
    for (const auto& [name, entry] : entries()) map.emplace(name, entry.keys());
    return map;
  }();
  return parsers;
}

util::Result<Config> load_config(const std::optional<std::string>& explicit_path, std::vector<util::Diagnostic>& diagnostics) {
  return load_config(explicit_path, diagnostics, backend_key_parsers());
}

util::Result<Config> parse_config(std::string_view text, const std::string& path, std::vector<util::Diagnostic>& diagnostics) {
  return parse_config(text, path, diagnostics, backend_key_parsers());
}

util::Result<std::unique_ptr<Backend>> make_backend(const std::string& name, const CloudConfig* cloud, const Config* config) {
  auto it = entries().find(name);
  if (it == entries().end()) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("unknown backend '{}'; use {}", name, util::join_list(backend_names())));
  }
  return it->second.make(cloud, config);
}

util::Result<std::unique_ptr<Backend>> backend_for(const Run& run, const Config& config) {
  const CloudConfig* cloud = config.find_cloud(run.cloud);
  auto backend = make_backend(run.backend.empty() ? CloudConfig{}.backend : run.backend, cloud, &config);
  if (!backend && cloud == nullptr) {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("run {} ran on cloud '{}', which the config no longer has; add the cloud back "
                                        "to see its current status",
                                        run.id, run.cloud));
  }
  return backend;
}

}  // namespace gpurun::cloud
