#pragma once

// One interface over the places runs execute (this machine, a Slurm cluster, ...), picked by the
// cloud's `backend:` name. Every backend records its runs in the same StateStore.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "cloud/plan/config.hpp"
#include "cloud/backend/local/local_backend.hpp"
#include "cloud/state/logs.hpp"
#include "cloud/plan/run_spec.hpp"
#include "cloud/state/state.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// Where a run's output can be read while it grows.
struct LogSource {
  std::string path;
  LogFormat format = LogFormat::records;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // "local", "slurm".
  virtual std::string_view name() const = 0;
  // Records the run in `store` and starts it; secrets reach the workload only.
  virtual util::Result<Run> launch(StateStore& store, const RunSpec& spec, const SecretValues& secrets) = 0;
  // What launch would submit, secret values redacted (run --dry-run).
  virtual util::Result<std::string> dry_run(const RunSpec& spec, const SecretValues& secrets) = 0;
  // Stops the run; returns once the backend took the request.
  virtual util::Result<void> cancel(StateStore& store, const Run& run) = 0;
  // Brings the recorded status up to date with the backend and returns the run as now recorded.
  virtual util::Result<Run> refresh(StateStore& store, const Run& run) = 0;
  // The run's output.
  virtual LogSource log_source(const StateStore& store, const Run& run) const = 0;
};

// `config` (may be null) gives secret values when a backend resubmits a run on its own.
using BackendFactory = std::function<util::Result<std::unique_ptr<Backend>>(const CloudConfig* cloud, const Config* config)>;

// Adds (or replaces) the factory for backend `name`.
void register_backend(const std::string& name, BackendFactory factory);

// The backend `name` configured for `cloud` (null: the built-in defaults); `config` as for
// BackendFactory. Unknown names are a usage error listing the known ones.
util::Result<std::unique_ptr<Backend>> make_backend(const std::string& name, const CloudConfig* cloud,
                                                    const Config* config = nullptr);

// The backend of a recorded run, configured by its cloud in `config`.
util::Result<std::unique_ptr<Backend>> backend_for(const Run& run, const Config& config);

}  // namespace gpurun::cloud
