#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cloud/backend/backend.hpp"
#include "cloud/backend/local/local_settings.hpp"
#include "cloud/plan/run_spec.hpp"
#include "cloud/state/leases.hpp"
#include "cloud/state/state.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// The local backend (`backend: local`): runs on this machine under a detached supervisor. Takes
// no cloud settings (`cloud` and `config` may be null).
util::Result<std::unique_ptr<Backend>> make_local_backend(const CloudConfig* cloud, const Config* config);


// Records a queued run and starts its supervisor, a detached process that outlives the caller,
// holds the run's lock, leases its GPUs, runs every attempt and records the result.
util::Result<Run> launch_local(StateStore& store, const RunSpec& spec, const SecretValues& secrets,
                               const std::vector<LeaseDevice>& devices);

// This machine's GPUs as the lease store hands them out (GPURUN_LOCAL_GPUS, the local cloud's
// declared `gpus:`, else the probed devices).
std::vector<LeaseDevice> lease_devices(const Config& config);

// The supervisor's body, in the detached process: runs `run_id` to its end and returns its exit
// code. `lock_fd` holds the run's lock; `secrets` are the values of the run's secrets.
int supervise(const std::string& state_dir, const std::string& run_id, int lock_fd, const SecretValues& secrets,
              const std::vector<LeaseDevice>& devices);

// What the supervisor would run for `spec` (run --dry-run), in words and shell-quoted argv.
std::string local_dry_run(const RunSpec& spec);

// Asks the supervisor to stop the run: SIGTERM to the workload's process group, SIGKILL after the
// grace period, GPUs freed, status `cancelled`. Returns once the request is recorded. For a lost
// run it kills what is left of the workload (StateStore::leftover_workload) and frees its GPUs.
// With `force` the workload gets SIGKILL at once (also when SIGTERM was already sent).
util::Result<void> request_cancel(StateStore& store, const Run& run, bool force = false);

// When the supervisor sent the run's workload SIGTERM (cancel or timeout) and when SIGKILL
// follows, from <run dir>/term; empty before any SIGTERM.
StopProgress local_stop_progress(const std::string& state_dir, const std::string& run_id);

}  // namespace gpurun::cloud
