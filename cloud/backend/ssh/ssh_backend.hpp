#pragma once

// `backend: ssh`: GPU servers reached over SSH (README "GPU servers over SSH"). gpurun on each host
// runs the run with its local backend under the host-wide lease dir, so leases, FIFO queueing,
// masking and records are the local backend's; this side picks the host, ships gpurun and the
// manifest directory, and mirrors the remote run's status and log into the local state.

#include <memory>

#include "cloud/backend/backend.hpp"
#include "cloud/plan/config.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// The ssh backend of `cloud` (its settings parsed by ssh_config_keys()); `config` may be null.
util::Result<std::unique_ptr<Backend>> make_ssh_backend(const CloudConfig* cloud, const Config* config);

}  // namespace gpurun::cloud
