#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.hpp"

namespace gpurun::gpu {

// One GPU of this machine, as the driver reports it, with the catalog type it maps to.
struct LocalDevice {
  int index = 0;                    // the driver's index (CUDA_VISIBLE_DEVICES numbering)
  std::string uuid;                 // "GPU-8f2c..." ("GPU-declared-<n>" for declared devices)
  std::string name;                 // "NVIDIA A100-SXM4-40GB"
  std::uint64_t memory_bytes = 0;   // total memory; 0 when unknown
  std::string pci_bus_id;           // "00000000:3B:00.0"; empty when unknown
  std::optional<std::string> type;  // catalog type ("A100"); nullopt for devices outside the catalog
  int memory_gb = 0;                // catalog memory variant (40); 0 when type is nullopt

  bool operator==(const LocalDevice&) const = default;
};

// What discovery found and how.
struct Discovery {
  std::vector<LocalDevice> devices;
  std::string source = "none";     // "nvml", "nvidia-smi" or "none"
  std::vector<std::string> notes;  // why a probe failed, devices outside the catalog
};

// Where discovery looks. Empty fields mean the defaults ("libnvidia-ml.so.1", "nvidia-smi"
// searched in PATH).
struct DiscoveryOptions {
  std::string nvml_library;
  std::string nvidia_smi;
};

// A device that has compute processes right now, and their pids (ascending).
struct DeviceProcesses {
  int index = -1;     // the driver's index; -1 when the source does not say (nvidia-smi)
  std::string uuid;   // "GPU-8f2c..."
  std::vector<long> pids;

  bool operator==(const DeviceProcesses&) const = default;
};

// A GPU type named in a declaration (GPURUN_LOCAL_GPUS="T4:2,A100-40GB:1"), already parsed.
struct DeclaredGpu {
  std::string type;   // canonical catalog name
  int memory_gb = 0;  // a memory variant of the type
  int count = 1;
};

// Maps a driver's device name (and its total memory, 0 if unknown) to a catalog type and memory
// variant: ("A100", 80) for "NVIDIA A100-SXM4-80GB". nullopt for names outside the table, and for
// devices with less memory than the type's smallest variant; names are never guessed.
std::optional<std::pair<std::string, int>> map_device_name(std::string_view name, std::uint64_t memory_bytes);

// Options from the environment: GPURUN_NVML_LIBRARY and GPURUN_NVIDIA_SMI.
DiscoveryOptions discovery_options_from_env();

// Lists this machine's NVIDIA GPUs: NVML (dlopen'ed at run time) first, else nvidia-smi, else
// none. Never fails: when nothing answers, source is "none" and notes say why.
Discovery discover_local_gpus(const DiscoveryOptions& options);
// Same, with discovery_options_from_env().
Discovery discover_local_gpus();

// Parses `nvidia-smi --query-gpu=index,uuid,name,memory.total[,pci.bus_id] --format=csv,noheader`
// output ("0, GPU-aaa, Tesla T4, 15360 MiB"); types are not mapped. Errors name the bad line.
util::Result<std::vector<LocalDevice>> parse_nvidia_smi_csv(std::string_view text);

// Lists the devices that have compute processes right now (NVML's
// nvmlDeviceGetComputeRunningProcesses, else `nvidia-smi --query-compute-apps`). No driver, no
// tool or a failing one: an empty list, never an error.
std::vector<DeviceProcesses> find_compute_processes(const DiscoveryOptions& options);

// Parses `nvidia-smi --query-compute-apps=gpu_uuid,pid --format=csv,noheader` output
// ("GPU-aaa, 4242"), grouped by device in order of first appearance. Errors name the bad line.
util::Result<std::vector<DeviceProcesses>> parse_compute_apps_csv(std::string_view text);

// Fills type and memory_gb of each device through map_device_name; returns one note per device
// outside the catalog.
std::vector<std::string> map_devices(std::vector<LocalDevice>& devices);

// Devices standing for declared GPUs, in order: index 0..n-1, uuid "GPU-declared-<index>",
// name "<type>-<memory>GB", memory_bytes = memory_gb GiB, type and memory_gb as declared.
std::vector<LocalDevice> declared_devices(const std::vector<DeclaredGpu>& declared);

}  // namespace gpurun::gpu
