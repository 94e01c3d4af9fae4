#pragma once

// slurmrestd's wire format, kept apart from transport: request bodies and response parsing for one
// OpenAPI version per ApiDialect (v0.0.38 = Slurm 22.05). Everything version-specific lives here.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/result.hpp"

namespace gpurun::cloud::slurm {

// A batch job to submit (sbatch's options that gpurun uses).
struct JobSubmit {
  std::string script;                          // the whole batch script, "#!/bin/bash\n..."
  std::string name;
  std::string partition;
  std::string gres;                            // "gpu:a100:1"; empty = no GRES
  std::optional<long> time_limit_minutes;
  std::optional<int> cpus_per_task;
  std::optional<long> memory_per_node_mb;
  std::map<std::string, std::string> environment;  // the job's whole environment (secrets too);
                                                   // empty sends PATH only (v0.0.38 needs one entry)
  std::string current_working_directory;
  std::string standard_output;                 // path on the cluster; empty = Slurm's default
  std::string standard_error;                  // empty = with standard_output
  std::string account;
  std::string qos;
  std::string constraint;                      // node features
  std::string signal;                          // sbatch --signal: "B:TERM@60"; empty = none
  bool requeue = true;
  bool append_output = true;                   // open_mode append: requeued attempts add to the log
  nlohmann::json extra = nlohmann::json::object();  // more job fields, verbatim (they win)
  std::vector<std::string> directories;        // on the cluster before the job (volumes); not sent to Slurm
  std::string runner;  // gpurun's copy the job runs on the cluster ("~/" = $HOME), if any: transports
                       // that reach the cluster remotely refuse the submit when it is gone (is_runner_missing)
};

// One entry of a response's `errors`.
struct ApiError {
  long code = 0;            // Slurm errno (error_code / error_number), 0 when absent
  std::string message;      // "Requested node configuration is not available"
  std::string description;  // "Unable to find JobId=999999" (may be empty)
};

// "Invalid job id specified (Slurm error 2017: Unable to find JobId=9)", several joined with ", ".
std::string describe_errors(const std::vector<ApiError>& errors);

// Slurm error numbers gpurun reacts to.
inline constexpr long kErrorInvalidPartition = 2000;
inline constexpr long kErrorNodeConfigUnavailable = 2014;  // impossible request: unschedulable
inline constexpr long kErrorInvalidJobId = 2017;
inline constexpr long kErrorAlreadyDone = 2021;

// gpurun's run statuses (names match cloud::RunStatus) plus `unknown` for states it does not know.
enum class JobStatus { queued, running, succeeded, failed, cancelled, timeout, preempted, unknown };
// "queued", "running", ... "unknown".
std::string_view to_string(JobStatus status);

// A job as GET /job/{id} reports it.
struct JobInfo {
  long long job_id = 0;
  std::string name;
  std::string state;              // raw: "PENDING", "RUNNING", "COMPLETED", ...
  std::string state_reason;       // raw: "Resources", "BeginTime", "NonZeroExitCode", "None"
  std::string state_description;
  long long raw_exit_code = 0;    // a wait status: 768 = exit 3, 15 = killed by SIGTERM
  std::optional<int> exit_code;   // decoded; nullopt while none or when killed by a signal
  std::optional<int> exit_signal; // the signal that ended it
  std::string partition;
  std::string nodes;              // "gcp-node1"; empty while pending
  std::string batch_host;
  std::optional<std::int64_t> submit_time, start_time, end_time;  // unix seconds, as reported
  std::optional<std::int64_t> eligible_time;  // unix seconds: when it may start (begin_time)
  int restart_cnt = 0;            // requeues so far
  std::vector<std::string> gres_detail;  // "gpu:a100:1(IDX:0)" while running
  std::string standard_output;    // as submitted (%j not expanded)
};

// A job state mapped to gpurun's view.
struct StatusView {
  JobStatus status = JobStatus::unknown;
  std::string reason;  // why queued / failed etc., empty when nothing to say
};

// PENDING -> queued; RUNNING/COMPLETING/CONFIGURING -> running; COMPLETED -> succeeded;
// FAILED/OUT_OF_MEMORY/NODE_FAIL/BOOT_FAIL -> failed; CANCELLED -> cancelled;
// TIMEOUT/DEADLINE -> timeout; PREEMPTED/REQUEUED/REQUEUE_HOLD/REQUEUE_FED -> preempted.
StatusView map_state(const JobInfo& job);

struct WaitStatus {
  std::optional<int> exit_code;  // set when the process exited
  std::optional<int> signal;     // set when a signal killed it
};
// A raw wait status split into exit code (status >> 8) or terminating signal (status & 0x7f);
// both empty for values that are no wait status (negative, or Slurm's NO_VAL).
WaitStatus decode_wait_status(long long raw);

// One GPU type on a node or partition: "gpu:t4:4" -> {t4, 4}. An untyped "gpu:2" has type "".
struct GresOffer {
  std::string type;
  long count = 0;
};

// GPU entries of a GRES string ("gpu:t4:4,gpu:a10g:4(S:0)", non-gpu GRES skipped); bad items skipped.
std::vector<GresOffer> parse_gpu_gres(std::string_view gres);

struct NodeInfo {
  std::string name;
  std::string state;                    // "idle", "mixed", "allocated", "down", ...
  std::vector<std::string> partitions;
  std::string gres;                     // "gpu:t4:4,gpu:a10g:4"
  std::string gres_used;                // "gpu:t4:1(IDX:0),gpu:a10g:0(IDX:N/A)"
  long cpus = 0;
  long real_memory_mb = 0;
};

// Per partition, what one node can give at most of each GPU type (first-seen order).
std::map<std::string, std::vector<GresOffer>> partition_gpu_offers(const std::vector<NodeInfo>& nodes);
// "a100:2, a100_20g:2" or "no GPUs".
std::string describe_gpu_offers(const std::vector<GresOffer>& offers);

// What DELETE /job/{id} did.
enum class CancelOutcome { cancelled, already_done, unknown_job };

// Request bodies and response parsing for one slurmrestd OpenAPI version. Parsers take the HTTP
// status and body; 401/403 and transport failures are the client's business. Errors follow
// "<what>: <why>; <what to do>" with ExitCode::unschedulable for impossible requests and
// ExitCode::backend for everything else.
class ApiDialect {
 public:
  virtual ~ApiDialect() = default;
  // "v0.0.38".
  virtual std::string_view version() const = 0;
  // The URL path of an endpoint: path("/job/submit") == "/slurm/v0.0.38/job/submit".
  std::string path(std::string_view endpoint) const;
  // POST /job/submit body.
  virtual std::string submit_body(const JobSubmit& job) const = 0;
  // The new job's id, or the rejection (2014 = unschedulable).
  virtual util::Result<long long> parse_submit(long status, std::string_view body) const = 0;
  // GET /job/{id}: the job, or nullopt when Slurm does not know the id (never existed, or
  // forgotten MinJobAge after it ended).
  virtual util::Result<std::optional<JobInfo>> parse_job(long status, std::string_view body) const = 0;
  // Every job of a job list (GET /jobs, or `squeue --json`, which prints the same document).
  virtual util::Result<std::vector<JobInfo>> parse_jobs(long status, std::string_view body) const = 0;
  // GET /nodes (or `sinfo --json`).
  virtual util::Result<std::vector<NodeInfo>> parse_nodes(long status, std::string_view body) const = 0;
  // GET /ping: ok when a controller answers UP.
  virtual util::Result<void> parse_ping(long status, std::string_view body) const = 0;
  // DELETE /job/{id}.
  virtual util::Result<CancelOutcome> parse_cancel(long status, std::string_view body) const = 0;
  // The `errors` of any response body; empty when none or when the body is not JSON.
  virtual std::vector<ApiError> parse_errors(std::string_view body) const = 0;
};

// The dialect for an api_version ("v0.0.38"); a usage error naming the supported versions.
util::Result<std::shared_ptr<const ApiDialect>> dialect_for(std::string_view api_version);
// Versions dialect_for knows, oldest first.
std::vector<std::string> supported_api_versions();

}  // namespace gpurun::cloud::slurm
