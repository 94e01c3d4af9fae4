#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "cloud/plan/run_spec.hpp"

namespace gpurun::cloud {

// One GPU of a cloud's inventory. Devices are identified by uuid (by index when uuid is empty).
struct LeaseDevice {
  int index = 0;
  std::string uuid;
  std::string type;    // canonical catalog name: "A100"
  int memory_gb = 0;
  bool operator==(const LeaseDevice&) const = default;
};

// Devices that processes outside gpurun use right now: device key (uuid) -> their pids (may be
// empty when the driver does not say). Such a device counts as busy unless gpurun leased it.
using ExternalUse = std::map<std::string, std::vector<long>>;

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
