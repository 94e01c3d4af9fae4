#pragma once

// The keys of a `backend: ssh` cloud (README "GPU servers over SSH"): the SSH settings cloud-wide
// and per host, each host's GPUs and its host-wide lease directory.

#include <string>
#include <vector>

#include "cloud/plan/config.hpp"
#include "cloud/ssh/ssh_config.hpp"
#include "gpu/spec.hpp"

namespace gpurun::cloud {

// The lease directory a host uses when the config names none.
inline constexpr const char* default_lease_dir = "/var/lib/gpurun/leases";

// One GPU server of an ssh cloud.
struct SshHost {
  std::string name;                     // as written under `host:` (how messages name it)
  SshSettings ssh;                      // the cloud-wide settings merged with the host's
  std::vector<gpu::GpuSlot> gpus;       // declared GPUs (found ones, when `discover`)
  std::vector<std::string> gpus_as_written;
  bool discover = false;                // no `gpus:`: found on the host (ssh_backend caches them)
  std::string lease_dir = default_lease_dir;  // the host-wide state of every user's runs there
  int line = 0;
};

struct SshCloudSettings : BackendSettings {
  std::vector<SshHost> hosts;
};

// The config keys of `backend: ssh` (SSH keys, hosts, lease_dir) and their parser: each host
// needs `host`; its `gpus` are declared, or found on the host when left out. The cloud offers the
// union of its hosts' declared GPUs (found ones join at plan time).
BackendKeyParser ssh_config_keys();

// The ssh settings of `cloud`, or null when it is no ssh cloud.
const SshCloudSettings* ssh_settings_of(const CloudConfig& cloud);

}  // namespace gpurun::cloud
