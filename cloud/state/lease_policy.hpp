#pragma once

// The GPU lease policy, as a pure function: first come, first served per cloud, smallest
// sufficient memory first. The StateStore keeps the tickets and grants; this decides.

#include <set>
#include <string>
#include <vector>

#include "cloud/state/leases.hpp"

namespace gpurun::cloud {

// What one waiting ticket asks and what the cloud looks like right now.
struct LeaseRequest {
  std::string cloud;
  std::vector<LeaseAlternative> alternatives;                    // in preference order
  std::vector<LeaseDevice> inventory;                            // every device of the cloud
  std::set<std::string> busy;                                    // device_key of granted devices
  ExternalUse external;                                          // devices in use outside gpurun
  std::vector<std::vector<LeaseAlternative>> earlier_waiting;    // earlier tickets, oldest first
};

// Grants the first alternative with enough free matching devices none of which an earlier
// waiting ticket could use (FIFO without starvation); devices in `external` are not free either.
// Impossible when no alternative fits the inventory even when idle; else Waiting with a reason
// ("all 2 in use (GPU 1 by a process outside gpurun: pid 4242), 1 request ahead").
LeaseOutcome decide_lease(const LeaseRequest& request);

// A device's identity on its cloud: its uuid, else "index:N".
std::string device_key(const LeaseDevice& device);

// The stored (JSON) form of a ticket's alternatives, and back (malformed text: none).
std::string alternatives_to_json(const std::vector<LeaseAlternative>& alternatives);
std::vector<LeaseAlternative> alternatives_from_json(const std::string& text);

}  // namespace gpurun::cloud
