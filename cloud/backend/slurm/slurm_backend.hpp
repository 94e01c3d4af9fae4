#pragma once

// The Slurm backend: a run is a batch job submitted through slurmrestd. Its output goes to
// <log_dir>/<run id>.log (appended per attempt), its exit code to <log_dir>/<run id>.exit; the
// state keeps the job id (runs.remote_id "JOBID", or "JOBID+OFFSET+RETRIES" after a resubmission) and
// is refreshed from slurmrestd whenever a command looks at the run.

#include <memory>
#include <string>

#include "cloud/backend/backend.hpp"
#include "cloud/backend/slurm/slurm_api.hpp"
#include "cloud/ssh/ssh_config.hpp"

namespace gpurun::cloud {

// A Slurm backend for `cloud` (which must be a slurm cloud; usage error otherwise). With `config`,
// a failed job with retries left is resubmitted by whichever process refreshes it (secret values
// from `config` and GPURUN_SECRET_* variables); without, it fails.
util::Result<std::unique_ptr<Backend>> make_slurm_backend(const CloudConfig* cloud, const Config* config = nullptr);

// The GRES type for catalog type `type` with `memory_gb` on `cloud`: the cloud's `gres` entry for
// "TYPE-<mem>GB", else for "TYPE" (case-insensitive), else the type in lower case.
std::string slurm_gres_type(const CloudConfig& cloud, const std::string& type, int memory_gb);

// The partition for GPU type `type` on `cloud`: its `partitions` entry (case-insensitive), else
// `partition` (empty: Slurm's default partition).
std::string slurm_partition(const CloudConfig& cloud, const std::string& type);

// The SSH settings of a `transport: ssh` cloud (host, port, user, identity_file, ssh_options,
// remote_setup; node_gpurun as gpurun_path).
SshSettings ssh_settings(const CloudConfig& cloud);

// The job fields for `spec` on `cloud` (script, gres, limits, environment with secret values).
util::Result<slurm::JobSubmit> slurm_job_for(const CloudConfig& cloud, const RunSpec& spec, const std::string& run_id,
                                             const SecretValues& secrets, int attempt_offset);

}  // namespace gpurun::cloud
