#pragma once

// A slurm cloud's own config keys (README "Slurm"): parsed and checked here, with positioned
// diagnostics, for cloud/plan/config.cpp through the backend registry.

#include <string>
#include <utility>
#include <vector>

#include "cloud/plan/config.hpp"

namespace gpurun::cloud {

struct SlurmSettings final : BackendSettings {
  std::string endpoint;   // unix:///path.sock or http(s)://host:port
  std::string partition;
  std::string log_dir;    // shared by login and compute nodes
  std::string token_env = "SLURM_JWT";
  std::string user;       // default $USER
  std::string api_version = "v0.0.38";
  std::vector<std::pair<std::string, std::string>> gres;  // catalog type[-memory] -> GRES type
  std::string account;
  std::string qos;
  std::string constraint;
  std::vector<std::string> sbatch_options;
  // Functions with `image:`: how the node runs the image (bubblewrap via `gpurun node-exec`,
  // pyxis or apptainer), the node-local cache it pulls into, and gpurun's path on the nodes.
  std::string container_runtime = "bubblewrap";
  std::string image_cache;  // empty: /tmp/gpurun-<uid>/images on the node
  std::string node_gpurun;  // empty: the path of the gpurun that submits (a shared install)
  std::string volume_dir;   // where volumes live on the shared filesystem; empty: <log_dir>/volumes
};

// The slurm settings of `cloud` (the defaults when it has none).
const SlurmSettings& slurm_settings(const CloudConfig& cloud);

// The keys a slurm cloud may have and their parser (registered in cloud/backend/registry.cpp).
BackendKeyParser slurm_config_keys();

// The GRES type sent for `type` with `memory_gb`: the cloud's "TYPE-NNGB" entry, else its "TYPE"
// entry, else the lower-case type.
std::string slurm_gres_type(const CloudConfig& cloud, const std::string& type, int memory_gb);

}  // namespace gpurun::cloud
