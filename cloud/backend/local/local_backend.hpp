#pragma once

#include <string>
#include <utility>
#include <vector>

#include "cloud/plan/run_spec.hpp"
#include "cloud/state/state.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// Secret values for one run: name -> variables. Handed to the supervisor in memory, never stored
// or logged.
using SecretValues = std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>;

// <state dir>/runs/<id>: the run's lock, log, scratch dir and cancel request live here.
std::string run_dir(const std::string& state_dir, const std::string& run_id);

// Records a queued run and starts its supervisor, a detached process that outlives the caller,
// holds the run's lock, leases its GPUs, runs every attempt and records the result.
util::Result<Run> launch_local(StateStore& store, const RunSpec& spec, const SecretValues& secrets);

// The supervisor's body, in the detached process: runs `run_id` to its end and returns its exit
// code. `lock_fd` holds the run's lock; `secrets` are the values of the run's secrets.
int supervise(const std::string& state_dir, const std::string& run_id, int lock_fd, const SecretValues& secrets);

// Asks the supervisor to stop the run: SIGTERM to the workload's process group, SIGKILL after the
// grace period, GPUs freed, status `cancelled`. Returns once the request is recorded.
util::Result<void> request_cancel(StateStore& store, const Run& run);

// The exit code `run` and `wait` report for an ended run: the workload's own code, 124 for a
// timeout, 130 when cancelled, 125 when lost.
int exit_code_of(const Run& run);

}  // namespace gpurun::cloud
