#include "cloud/backend/backend.hpp"

#include <fmt/format.h>
#include <mutex>

#include "cloud/backend/slurm/slurm_backend.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

// The local backend: a thin adapter around launch_local / request_cancel.
class LocalBackend final : public Backend {
 public:
  std::string_view name() const override { return "local"; }
  util::Result<Run> launch(StateStore& store, const RunSpec& spec, const SecretValues& secrets) override {
    return launch_local(store, spec, secrets);
  }
  util::Result<std::string> dry_run(const RunSpec& spec, const SecretValues& /*secrets*/) override {
    return to_json(spec) + "\n";
  }
  util::Result<void> cancel(StateStore& store, const Run& run) override { return request_cancel(store, run); }
  util::Result<Run> refresh(StateStore& store, const Run& run) override {
    // Reconciling only refines what is shown; get_run reports a database that cannot be used.
    (void)store.reconcile_lost();
    return store.get_run(run.id);
  }
  LogSource log_source(const StateStore& store, const Run& run) const override {
    return {run_dir(store.dir(), run.id) + "/log", LogFormat::records};
  }
};

std::mutex g_mutex;

std::map<std::string, BackendFactory>& registry() {
  static std::map<std::string, BackendFactory> factories = {
      {"local", [](const CloudConfig*, const Config*) -> util::Result<std::unique_ptr<Backend>> { return std::unique_ptr<Backend>(new LocalBackend()); }},
      {"slurm", [](const CloudConfig* cloud, const Config* config) -> util::Result<std::unique_ptr<Backend>> {
         return make_slurm_backend(cloud, config);
       }},
  };
  return factories;
}

}  // namespace

void register_backend(const std::string& name, BackendFactory factory) {
  std::lock_guard<std::mutex> lock(g_mutex);
  registry()[name] = std::move(factory);
}

util::Result<std::unique_ptr<Backend>> make_backend(const std::string& name, const CloudConfig* cloud, const Config* config) {
  BackendFactory factory;
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = registry().find(name);
    if (it != registry().end()) factory = it->second;
    for (const auto& [n, f] : registry()) names.push_back(n);
  }
  if (!factory) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("unknown backend '{}'; use {}", name, util::join_list(names)));
  }
  return factory(cloud, config);
}

util::Result<std::unique_ptr<Backend>> backend_for(const Run& run, const Config& config) {
  const CloudConfig* cloud = config.find_cloud(run.cloud);
  if (cloud == nullptr && run.backend != "local") {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("run {} ran on cloud '{}', which the config no longer has; add the cloud back "
                                        "to see its current status",
                                        run.id, run.cloud));
  }
  return make_backend(run.backend.empty() ? "local" : run.backend, cloud, &config);
}

}  // namespace gpurun::cloud
