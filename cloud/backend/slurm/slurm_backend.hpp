#pragma once

// The Slurm backend: a run is a batch job submitted through slurmrestd. Its output goes to
// <log_dir>/<run id>.log (appended per attempt), its exit code to <log_dir>/<run id>.exit; the
// state keeps the job id (runs.remote_id "JOBID", or "JOBID+OFFSET+RETRIES" after a resubmission) and
// is refreshed from slurmrestd whenever a command looks at the run.

#include <memory>
#include <string>

#include "cloud/backend/backend.hpp"
#include "cloud/backend/slurm/slurm_api.hpp"
#include "cloud/backend/slurm/slurm_settings.hpp"

namespace gpurun::cloud {

// A Slurm backend for `cloud` (which must be a slurm cloud; usage error otherwise). With `config`,
// a failed job with retries left is resubmitted by whichever process refreshes it (secret values
// from `config` and GPURUN_SECRET_* variables); without, it fails.
util::Result<std::unique_ptr<Backend>> make_slurm_backend(const CloudConfig* cloud, const Config* config = nullptr);

// The job fields for `spec` on `cloud` (script, gres, limits, environment with secret values).
util::Result<slurm::JobSubmit> slurm_job_for(const CloudConfig& cloud, const RunSpec& spec, const std::string& run_id,
                                             const SecretValues& secrets, int attempt_offset);

}  // namespace gpurun::cloud
