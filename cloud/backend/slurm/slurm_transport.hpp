#pragma once

// How the Slurm backend reaches a cluster (a cloud's `transport:`): slurmrestd (`rest`), the Slurm
// commands on this machine (`cli`), or the same commands on a login node over SSH (`ssh`). The
// backend above speaks only this interface; files on the cluster (logs, exit files) are read
// through it too, as only `rest` and `cli` see the cluster's filesystem locally.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cloud/backend/slurm/slurm_api.hpp"
#include "cloud/ssh/ssh_config.hpp"
#include "util/result.hpp"

namespace gpurun::cloud::slurm {

// What a transport needs to know; `transport` picks the implementation.
struct TransportOptions {
  std::string transport = "rest";       // rest, cli or ssh
  std::string endpoint;                 // rest: unix:///x.sock or http(s)://host:port
  std::string api_version = "v0.0.38";
  std::string user;                     // rest: X-SLURM-USER-NAME
  std::string token_env = "SLURM_JWT";  // rest: the JWT's variable
  SshSettings ssh;                      // ssh: the login node
  std::string cloud;                    // the cloud's name, for messages
};

class Transport {
 public:
  virtual ~Transport() = default;
  // "rest", "cli" or "ssh".
  virtual std::string_view name() const = 0;
  // True when the cluster's files (log_dir) are this machine's files.
  virtual bool local_files() const = 0;
  // Submits `job` (making the directory of its output and job.directories first where the
  // cluster's files are remote);
  // the job id. An impossible request is ExitCode::unschedulable.
  virtual util::Result<long long> submit(const JobSubmit& job) = 0;
  // The jobs among `ids` that Slurm still knows, in one status request where the transport can.
  virtual util::Result<std::map<long long, JobInfo>> jobs(std::span<const long long> ids) = 0;
  // Cancels the jobs (unknown or ended ids are no error).
  virtual util::Result<void> cancel(std::span<const long long> ids) = 0;
  // The cluster's nodes (GPUs per partition, for pending reasons and unschedulable errors).
  virtual util::Result<std::vector<NodeInfo>> nodes() = 0;
  // Up to `max` bytes of cluster file `path` after its first `offset` bytes; nullopt when the
  // file does not exist.
  virtual util::Result<std::optional<std::string>> read_file(const std::string& path, std::uint64_t offset,
                                                             std::size_t max) = 0;
  // The size of cluster file `path`; 0 when it does not exist.
  virtual util::Result<std::uint64_t> file_size(const std::string& path) = 0;
};

// Whether a submit failed because the job's runner (JobSubmit::runner) is missing on the cluster.
bool is_runner_missing(const util::Error& error);

// The transport for `options` (usage error for an unknown name or bad settings).
util::Result<std::unique_ptr<Transport>> open_transport(const TransportOptions& options);

// The sbatch command line (options only, the script comes on stdin) for `job`: --parsable,
// --export=ALL (the job's environment is sbatch's), and each field as its option.
std::vector<std::string> sbatch_arguments(const JobSubmit& job);

// The job of `job_id` in `squeue --json` output (`body`), which lists every job whatever its
// filters (Slurm 22.05): the jobs among `ids`.
util::Result<std::map<long long, JobInfo>> jobs_from_squeue_json(std::string_view body, std::span<const long long> ids);

// sbatch's failure (exit status != 0, `stderr_text`) as gpurun's error: unschedulable for an
// impossible request, a bad partition named, else sbatch's own last line.
util::Error sbatch_failure(std::string_view stderr_text, const std::string& cloud);

}  // namespace gpurun::cloud::slurm
