#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace gpurun::cloud {

// One GPU of a cloud's inventory. Devices are identified by uuid (by index when uuid is empty).
struct LeaseDevice {
  int index = 0;
  std::string uuid;
  std::string type;    // canonical catalog name: "A100"
  int memory_gb = 0;
  bool operator==(const LeaseDevice&) const = default;
};

// `count` devices of `type` (case-insensitive; empty = any type) with memory >= min_memory_gb
// and, when max_memory_gb > 0, <= max_memory_gb (an exact variant: "H100!", "16GB..24GB").
struct LeaseAlternative {
  std::string type;
  int min_memory_gb = 0;
  int count = 1;
  int max_memory_gb = 0;
};

// A queued lease request: its sequence number gives the arrival order.
using LeaseTicket = std::int64_t;

// The devices granted (ordered by index) and which alternative they satisfy.
struct LeaseGranted {
  std::vector<LeaseDevice> devices;
  int alternative_index = 0;
};
// Not now: e.g. "2 of 2 busy" or "1 of 2 busy, 1 request ahead".
struct LeaseWaiting {
  std::string reason;
};
// Never on this inventory: e.g. "4x T4 asked, local has 2".
struct LeaseImpossible {
  std::string reason;
};
using LeaseOutcome = std::variant<LeaseGranted, LeaseWaiting, LeaseImpossible>;

}  // namespace gpurun::cloud
