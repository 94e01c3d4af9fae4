#pragma once

#include <string>
#include <vector>

#include "cloud/plan/config.hpp"
#include "gpu/discovery.hpp"
#include "gpu/spec.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// The GPUs of this machine as the local backend sees them, and where that knowledge came from.
struct LocalInventory {
  std::vector<gpu::LocalDevice> devices;  // every device, in index order (declared ones are synthesized)
  std::vector<gpu::GpuSlot> offers;        // one entry per type/memory variant; count = how many devices
  std::string source;                 // "GPURUN_LOCAL_GPUS", "config", "nvml", "nvidia-smi", "none"
  std::vector<std::string> notes;     // e.g. devices whose names match no catalog type
};

// Declared devices ("T4:2,A100-40GB:1") parsed with the GPU grammar; usage error when malformed.
util::Result<std::vector<gpu::GpuSlot>> parse_declared_gpus(std::string_view text, const gpu::Catalog& catalog);

// $GPURUN_LOCAL_GPUS (wins), else clouds.local.gpus from the config, else probing the devices
// (NVML, then nvidia-smi). Devices whose names match no catalog type are left out, with a note.
util::Result<LocalInventory> local_inventory(const Config& config);

// Groups devices with a catalog type into offers (type, memory variant, how many).
std::vector<gpu::GpuSlot> offers_of(const std::vector<gpu::LocalDevice>& devices);

}  // namespace gpurun::cloud
