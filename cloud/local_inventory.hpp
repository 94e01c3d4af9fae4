#pragma once

#include <string>
#include <vector>

#include "cloud/config.hpp"
#include "gpu/spec.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// The GPUs of this machine as the local backend sees them, and where that knowledge came from.
struct LocalInventory {
  std::vector<gpu::GpuSlot> devices;  // one entry per type/memory variant; count = how many devices
  std::string source;                 // "GPURUN_LOCAL_GPUS", "config", "nvml", "nvidia-smi", "none"
  std::vector<std::string> notes;     // e.g. devices whose names match no catalog type
};

// Declared devices ("T4:2,A100-40GB:1") parsed with the GPU grammar; usage error when malformed.
util::Result<std::vector<gpu::GpuSlot>> parse_declared_gpus(std::string_view text, const gpu::Catalog& catalog);

// $GPURUN_LOCAL_GPUS (wins), else clouds.local.gpus from the config, else probing the devices.
util::Result<LocalInventory> local_inventory(const Config& config);

}  // namespace gpurun::cloud
