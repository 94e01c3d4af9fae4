#pragma once

// Slurm's pending reasons in words: why a queued job waits, in the shape every backend uses
// ("waiting for 1x A100-40GB on gcp: all 2 in use (Resources)"), the raw reason in parentheses.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/backend/slurm/slurm_api.hpp"

namespace gpurun::cloud::slurm {

// GPUs of one type on a partition's nodes: how many there are and how many jobs hold now.
struct GpuCapacity {
  long total = 0;
  long used = 0;
};

// A retry gpurun scheduled (Slurm's BeginTime): retry `number` of `of`, starting `delay_seconds`
// after it was scheduled (the manifest's backoff), after `after` ("exit code 7", "timing out after 2s").
struct ScheduledRetry {
  int number = 0;
  int of = 0;
  long long delay_seconds = 0;
  std::string after;
};

// What a pending reason means ("Priority" -> "higher-priority jobs go first"); empty for "None",
// "" and reasons it does not know.
std::string pending_reason_phrase(std::string_view raw);

// The part after "waiting for X on CLOUD: ": the phrase and the raw reason in parentheses
// ("all 2 in use (Resources)", "retry 1 of 2 in 4s (after exit code 7) (BeginTime)"); capacity
// (when known) words Resources and Priority, retry words BeginTime; "queued" when Slurm gives none.
std::string describe_pending(std::string_view raw, const std::optional<GpuCapacity>& capacity,
                             const std::optional<ScheduledRetry>& retry, long needed);

// True when pending reason `raw` can never clear by waiting (the job asks for more than its
// partition or QOS ever allows): PartitionTimeLimit, PartitionNodeLimit, QOSMaxGRESPerUser,
// QOSMaxGRESPerJob, QOSMaxWallDurationPerJobLimit, QOSMaxNodePerJobLimit, BadConstraints,
// DependencyNeverSatisfied. ReqNodeNotAvail is final only when `missing_nodes` (the unavailable
// nodes of `description` that the cluster does not have) is true.
bool never_satisfiable(std::string_view raw, bool missing_nodes = false);

// The nodes a ReqNodeNotAvail job's description names ("ReqNodeNotAvail, UnavailableNodes:a,b");
// empty when it names none or uses a range ("node[1-4]").
std::vector<std::string> unavailable_nodes(std::string_view description);

// The GPUs of GRES type `type` on the nodes of `partition` (all nodes when empty): total and in
// use; nullopt when no node has that type.
std::optional<GpuCapacity> gpu_capacity(const std::vector<NodeInfo>& nodes, const std::string& partition,
                                        const std::string& type);

}  // namespace gpurun::cloud::slurm
