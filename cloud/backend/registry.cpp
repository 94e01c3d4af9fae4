#include "cloud/backend/registry.hpp"

#include <fmt/format.h>
#include <map>

#include "cloud/backend/kubernetes/kubernetes_backend.hpp"
#include "cloud/backend/local/local_backend.hpp"
#include "cloud/backend/slurm/slurm_backend.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

using Factory = util::Result<std::unique_ptr<Backend>> (*)(const CloudConfig* cloud, const Config* config);

// Every backend gpurun has, by its `backend:` name.
const std::map<std::string, Factory>& factories() {
  static const std::map<std::string, Factory> map = {
      {"kubernetes", &make_kubernetes_backend},
      {"local", &make_local_backend},
      {"slurm", &make_slurm_backend},
  };
  return map;
}

}  // namespace

std::vector<std::string> backend_names() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : factories()) names.push_back(name);
  return names;
}

util::Result<std::unique_ptr<Backend>> make_backend(const std::string& name, const CloudConfig* cloud, const Config* config) {
  auto it = factories().find(name);
  if (it == factories().end()) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("unknown backend '{}'; use {}", name, util::join_list(backend_names())));
  }
  return it->second(cloud, config);
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
