#include "cloud/state/lease_policy.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

std::string device_key_of(const LeaseDevice& device) {
  return device.uuid.empty() ? "index:" + std::to_string(device.index) : device.uuid;
}

bool matches(const LeaseDevice& device, const LeaseAlternative& alternative) {
  return (alternative.type.empty() || util::iequals(device.type, alternative.type)) &&
         device.memory_gb >= alternative.min_memory_gb &&
         (alternative.max_memory_gb <= 0 || device.memory_gb <= alternative.max_memory_gb);
}

}  // namespace

std::string alternatives_to_json(const std::vector<LeaseAlternative>& alternatives) {
  nlohmann::json list = nlohmann::json::array();
  for (const LeaseAlternative& a : alternatives) {
    list.push_back({{"type", a.type}, {"min_memory_gb", a.min_memory_gb}, {"count", a.count}, {"max_memory_gb", a.max_memory_gb}});
  }
  return list.dump();
}

std::vector<LeaseAlternative> alternatives_from_json(const std::string& text) {
  std::vector<LeaseAlternative> alternatives;
  nlohmann::json list = nlohmann::json::parse(text, nullptr, false);
  if (!list.is_array()) return alternatives;
  for (const auto& item : list) {
    alternatives.push_back(LeaseAlternative{item.value("type", std::string()), item.value("min_memory_gb", 0),
                                            item.value("count", 1), item.value("max_memory_gb", 0)});
  }
  return alternatives;
}

namespace {

// "4x T4", "1x A100 with >= 80 GB", "1x H100 with 80 GB" (exact) or "1x GPU with 16-24 GB".
std::string describe(const LeaseAlternative& a) {
  std::string text = std::to_string(a.count) + "x " + (a.type.empty() ? std::string("GPU") : a.type);
  if (a.max_memory_gb > 0 && a.max_memory_gb == a.min_memory_gb) {
    text += " with " + std::to_string(a.min_memory_gb) + " GB";
  } else if (a.max_memory_gb > 0) {
    text += " with " + std::to_string(a.min_memory_gb) + "-" + std::to_string(a.max_memory_gb) + " GB";
  } else if (a.min_memory_gb > 0) {
    text += " with >= " + std::to_string(a.min_memory_gb) + " GB";
  }
  return text;
}

struct Candidates {
  std::vector<std::set<std::string>> per_alternative;  // matching devices; empty when too few exist
  std::set<std::string> keys;                          // devices any possible alternative could use
  bool possible(std::size_t i) const { return !per_alternative[i].empty(); }
};

Candidates candidates(const std::vector<LeaseAlternative>& alternatives, const std::vector<LeaseDevice>& inventory) {
  Candidates result;
  for (const LeaseAlternative& a : alternatives) {
    std::set<std::string> keys;
    for (const LeaseDevice& d : inventory) {
      if (matches(d, a)) keys.insert(device_key_of(d));
    }
    if (a.count < 1 || static_cast<int>(keys.size()) < a.count) keys.clear();
    result.keys.insert(keys.begin(), keys.end());
    result.per_alternative.push_back(std::move(keys));
  }
  return result;
}

bool intersects(const std::set<std::string>& a, const std::set<std::string>& b) {
  return std::any_of(a.begin(), a.end(), [&](const std::string& k) { return b.count(k) > 0; });
}

bool taken(const LeaseRequest& request, const std::string& key) {
  return request.busy.count(key) > 0 || request.external.count(key) > 0;
}

// " (GPU 1 by a process outside gpurun: pid 4242; GPU 3 by processes outside gpurun: pids 7, 9)"
// for the candidate devices that only processes outside gpurun hold; empty when there are none.
std::string outside_use(const LeaseRequest& request, const std::set<std::string>& keys) {
  std::vector<std::string> parts;
  for (const LeaseDevice& d : request.inventory) {
    const std::string key = device_key_of(d);
    const auto found = request.external.find(key);
    if (keys.count(key) == 0 || request.busy.count(key) > 0 || found == request.external.end()) continue;
    std::vector<std::string> pids;
    for (long pid : found->second) pids.push_back(std::to_string(pid));
    const bool many = pids.size() > 1;
    std::string part = "GPU " + std::to_string(d.index) + (many ? " by processes" : " by a process") + " outside gpurun";
    if (!pids.empty()) part += (many ? ": pids " : ": pid ") + util::join(pids, ", ");
    parts.push_back(std::move(part));
  }
  return parts.empty() ? "" : " (" + util::join(parts, "; ") + ")";
}

}  // namespace

std::string device_key(const LeaseDevice& device) { return device_key_of(device); }

LeaseOutcome decide_lease(const LeaseRequest& request) {
  const auto& alternatives = request.alternatives;
  const auto& inventory = request.inventory;
  Candidates mine = candidates(alternatives, inventory);
  if (mine.keys.empty()) {
    std::vector<std::string> why;
    for (const LeaseAlternative& a : alternatives) {
      long have = std::count_if(inventory.begin(), inventory.end(), [&](const LeaseDevice& d) { return matches(d, a); });
      why.push_back(describe(a) + " asked, " + request.cloud + " has " + std::to_string(have));
    }
    return LeaseImpossible{util::join(why, "; ")};
  }
  // Earlier waiting tickets go first on the devices they could use: an alternative is blocked
  // while one of them competes for its devices.
  int ahead = 0;
  std::vector<bool> blocked(alternatives.size(), false);
  for (const auto& earlier : request.earlier_waiting) {
    Candidates theirs = candidates(earlier, inventory);
    if (!intersects(theirs.keys, mine.keys)) continue;
    ++ahead;
    for (std::size_t i = 0; i < alternatives.size(); ++i) {
      if (intersects(theirs.keys, mine.per_alternative[i])) blocked[i] = true;
    }
  }
  for (std::size_t i = 0; i < alternatives.size(); ++i) {
    if (!mine.possible(i) || blocked[i]) continue;
    std::vector<LeaseDevice> free;
    for (const LeaseDevice& d : inventory) {
      if (matches(d, alternatives[i]) && !taken(request, device_key_of(d))) free.push_back(d);
    }
    if (static_cast<int>(free.size()) < alternatives[i].count) continue;
    std::stable_sort(free.begin(), free.end(), [](const LeaseDevice& a, const LeaseDevice& b) {
      return a.memory_gb != b.memory_gb ? a.memory_gb < b.memory_gb : a.index < b.index;
    });
    free.resize(static_cast<std::size_t>(alternatives[i].count));
    std::sort(free.begin(), free.end(), [](const LeaseDevice& a, const LeaseDevice& b) { return a.index < b.index; });
    return LeaseGranted{std::move(free), static_cast<int>(i)};
  }
  long busy_count =
      std::count_if(mine.keys.begin(), mine.keys.end(), [&](const std::string& k) { return taken(request, k); });
  // "all 2 in use" or "1 of 2 in use", the same words the remote backends use for their GPUs.
  const std::string total = std::to_string(mine.keys.size());
  std::string reason = busy_count == static_cast<long>(mine.keys.size()) ? "all " + total + " in use"
                                                                         : std::to_string(busy_count) + " of " + total + " in use";
  reason += outside_use(request, mine.keys);
  if (ahead > 0) reason += ", " + std::to_string(ahead) + (ahead == 1 ? " request" : " requests") + " ahead";
  return LeaseWaiting{reason};
}

}  // namespace gpurun::cloud
