#include "cloud/backend/slurm/slurm_reasons.hpp"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <utility>

#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::cloud::slurm {

namespace {

// Exact reasons, then prefixes for the families Slurm has many of (QOS*, Assoc*).
const std::pair<std::string_view, std::string_view> exact_phrases[] = {
    {"Resources", "waiting for free resources"},
    {"Priority", "higher-priority jobs go first"},
    {"BeginTime", "its start time has not come yet"},
    {"Dependency", "waiting for the jobs it depends on"},
    {"DependencyNeverSatisfied", "a job it depends on failed, so it will never start"},
    {"JobHeldUser", "held by its user (scontrol release starts it)"},
    {"JobHeldAdmin", "held by an administrator"},
    {"ReqNodeNotAvail", "the nodes it needs are down, drained or reserved"},
    {"NodeDown", "a node it needs is down"},
    {"PartitionDown", "its partition is down"},
    {"PartitionInactive", "its partition is inactive"},
    {"PartitionNodeLimit", "it asks for more nodes than its partition allows"},
    {"PartitionTimeLimit", "its time limit is longer than its partition allows"},
    {"Reservation", "waiting for its reservation to start"},
    {"Licenses", "waiting for licenses"},
    {"BadConstraints", "no node has the features it asks for"},
    {"Prolog", "the node's prolog is running"},
    {"QOSMaxGRESPerUser", "its QOS allows this user no more GPUs at once"},
    {"QOSMaxGRESPerJob", "it asks for more GPUs than its QOS allows a job"},
    {"QOSMaxWallDurationPerJobLimit", "its time limit is longer than its QOS allows"},
    {"QOSMaxNodePerJobLimit", "it asks for more nodes than its QOS allows a job"},
    {"QOSMaxJobsPerUserLimit", "its QOS allows this user no more jobs at once"},
    {"QOSGrpGRES", "its QOS has no GPUs left"},
    {"AssocGrpGRES", "its account has no GPUs left"},
    {"AssocMaxJobsLimit", "its account allows no more jobs at once"},
    {"launch failed requeued held", "held after a failed launch (scontrol release starts it again)"},
};

const std::pair<std::string_view, std::string_view> prefix_phrases[] = {
    {"QOS", "a limit of its QOS is reached"},
    {"Assoc", "a limit of its account is reached"},
};

}  // namespace

bool never_satisfiable(std::string_view raw, bool missing_nodes) {
  static const std::string_view final_reasons[] = {
      "PartitionTimeLimit",      "PartitionNodeLimit",           "QOSMaxGRESPerJob",
      "QOSMaxWallDurationPerJobLimit", "QOSMaxNodePerJobLimit", "BadConstraints",        "DependencyNeverSatisfied",
  };
  if (raw == "ReqNodeNotAvail") return missing_nodes;
  return std::find(std::begin(final_reasons), std::end(final_reasons), raw) != std::end(final_reasons);
}

std::vector<std::string> unavailable_nodes(std::string_view description) {
  const std::string_view key = "UnavailableNodes:";
  const auto at = description.find(key);
  if (at == std::string_view::npos) return {};
  std::string_view list = description.substr(at + key.size());
  list = list.substr(0, list.find_first_of(" \t"));
  if (list.find('[') != std::string_view::npos) return {};
  std::vector<std::string> out;
  for (auto& name : util::split(list, ',')) {
    if (!name.empty()) out.push_back(name);
  }
  return out;
}

std::string pending_reason_phrase(std::string_view raw) {
  for (const auto& [reason, phrase] : exact_phrases) {
    if (raw == reason) return std::string(phrase);
  }
  for (const auto& [prefix, phrase] : prefix_phrases) {
    if (raw.substr(0, prefix.size()) == prefix) return std::string(phrase);
  }
  return "";
}

std::string describe_pending(std::string_view raw, const std::optional<GpuCapacity>& capacity,
                             const std::optional<ScheduledRetry>& retry, long needed) {
  if (raw.empty() || raw == "None") return "queued";
  std::string phrase = pending_reason_phrase(raw);
  if (raw == "BeginTime" && retry) {
    const std::chrono::seconds delay(std::max(0LL, retry->delay_seconds));
    phrase = fmt::format("retry {} of {} in {}", retry->number, retry->of, util::format_duration(delay));
    if (!retry->after.empty()) phrase += fmt::format(" (after {})", retry->after);
  } else if ((raw == "Resources" || raw == "Priority") && capacity && capacity->total > 0) {
    const long free = std::max(0L, capacity->total - capacity->used);
    std::string use = free == 0 ? fmt::format("all {} in use", capacity->total)
                                : fmt::format("{} of {} free, {} needed", free, capacity->total, needed);
    phrase = raw == "Priority" ? use + ", " + phrase : use;
  }
  if (phrase.empty()) return fmt::format("queued ({})", raw);
  return fmt::format("{} ({})", phrase, raw);
}

std::optional<GpuCapacity> gpu_capacity(const std::vector<NodeInfo>& nodes, const std::string& partition,
                                        const std::string& type) {
  GpuCapacity capacity;
  for (const auto& node : nodes) {
    if (!partition.empty() &&
        std::find(node.partitions.begin(), node.partitions.end(), partition) == node.partitions.end()) {
      continue;
    }
    for (const auto& offer : parse_gpu_gres(node.gres)) {
      if (util::iequals(offer.type, type)) capacity.total += offer.count;
    }
    for (const auto& held : parse_gpu_gres(node.gres_used)) {
      if (util::iequals(held.type, type)) capacity.used += held.count;
    }
  }
  if (capacity.total == 0) return std::nullopt;
  return capacity;
}

}  // namespace gpurun::cloud::slurm
