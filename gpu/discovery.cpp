#include "gpu/discovery.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "gpu/catalog.hpp"
#include "util/dynamic_library.hpp"
#include "util/strings.hpp"

extern char** environ;

namespace gpurun::gpu {

namespace {

// The slice of NVML's C ABI that discovery calls (nvml.h is not shipped with the toolkit).
// Layouts follow nvml.h: nvmlMemory_t and nvmlPciInfo_t (as filled by nvmlDeviceGetPciInfo_v3).
extern "C" {
struct NvmlDeviceSt;
using NvmlDevice = NvmlDeviceSt*;
using NvmlReturn = int;  // nvmlReturn_t, an enum; NVML_SUCCESS = 0
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct NvmlPciInfo {
  char bus_id_legacy[16];  // NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pci_device_id;
  unsigned int pci_sub_system_id;
  char bus_id[32];  // NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE
};
using NvmlInitFn = NvmlReturn (*)();
using NvmlShutdownFn = NvmlReturn (*)();
using NvmlErrorStringFn = const char* (*)(NvmlReturn);
using NvmlDeviceGetCountFn = NvmlReturn (*)(unsigned int*);
using NvmlDeviceGetHandleByIndexFn = NvmlReturn (*)(unsigned int, NvmlDevice*);
using NvmlDeviceGetStringFn = NvmlReturn (*)(NvmlDevice, char*, unsigned int);
using NvmlDeviceGetMemoryInfoFn = NvmlReturn (*)(NvmlDevice, NvmlMemory*);
using NvmlDeviceGetPciInfoFn = NvmlReturn (*)(NvmlDevice, NvmlPciInfo*);
struct NvmlProcessInfo {  // nvmlProcessInfo_v2_t, also what the _v3 call fills
  unsigned int pid;
  unsigned long long used_gpu_memory;
  unsigned int gpu_instance_id;
  unsigned int compute_instance_id;
};
using NvmlDeviceGetProcessesFn = NvmlReturn (*)(NvmlDevice, unsigned int*, NvmlProcessInfo*);
}
constexpr NvmlReturn nvml_insufficient_size = 7;  // NVML_ERROR_INSUFFICIENT_SIZE

constexpr unsigned int nvml_string_buffer_size = 96;  // NVML_DEVICE_NAME_V2/UUID_V2 buffer sizes
constexpr int nvidia_smi_timeout_ms = 20'000;

struct NameEntry {
  std::string_view name;  // upper case, without the "NVIDIA "/"Tesla " prefix
  std::string_view type;
  int memory_hint_gb;  // the variant the name states, 0 when it states none
};

// Names as NVML and nvidia-smi report them (PCIe, SXM and NVL boards of every catalog type).
constexpr std::array<NameEntry, 36> name_table{{
    {"T4", "T4", 0},
    {"A10G", "A10G", 0},
    {"L4", "L4", 0},
    {"A100", "A100", 0},
    {"A100-SXM4-40GB", "A100", 40},
    {"A100-SXM4-80GB", "A100", 80},
    {"A100-PCIE-40GB", "A100", 40},
    {"A100-PCIE-80GB", "A100", 80},
    {"A100 80GB PCIE", "A100", 80},
    {"A100-SXM-80GB", "A100", 80},
    {"L40S", "L40S", 0},
    {"H100", "H100", 0},
    {"H100 80GB HBM3", "H100", 80},
    {"H100 PCIE", "H100", 80},
    {"H100 NVL", "H100", 94},
    {"H200", "H200", 0},
    {"H200 NVL", "H200", 0},
    {"V100", "V100", 0},
    {"V100-SXM2-16GB", "V100", 16},
    {"V100-SXM2-32GB", "V100", 32},
    {"V100-PCIE-16GB", "V100", 16},
    {"V100-PCIE-32GB", "V100", 32},
    {"V100S-PCIE-32GB", "V100", 32},
    {"A10", "A10", 0},
    {"A40", "A40", 0},
    {"L40", "L40", 0},
    {"RTX A6000", "A6000", 0},
    {"RTX 6000 ADA GENERATION", "RTX6000Ada", 0},
    {"RTX PRO 6000 BLACKWELL SERVER EDITION", "RTXPRO6000", 0},
    {"RTX PRO 6000 BLACKWELL WORKSTATION EDITION", "RTXPRO6000", 0},
    {"RTX PRO 6000 BLACKWELL MAX-Q WORKSTATION EDITION", "RTXPRO6000", 0},
    {"GH200", "GH200", 0},
    {"GH200 480GB", "GH200", 96},
    {"GH200 144G HBM3E", "GH200", 144},
    {"B200", "B200", 0},
    {"HGX B200", "B200", 0},
}};

// The memory variants of a built-in type (ascending), or nullptr.
const std::vector<int>* type_variants(std::string_view type) {
  static const Catalog builtin = Catalog::builtin();
  const GpuType* found = builtin.find(type);
  return found == nullptr ? nullptr : &found->memory_gb;
}

std::string_view strip_prefix(std::string_view name) {
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (std::string_view prefix : {"NVIDIA ", "TESLA "}) {
      if (name.size() > prefix.size() && util::iequals(name.substr(0, prefix.size()), prefix)) {
        name = util::trim(name.substr(prefix.size()));
        stripped = true;
      }
    }
  }
  return name;
}

// The largest variant the memory covers; boards report a little less than their nominal size
// (an "80GB" H100 shows 79.6 GiB, a "16GB" T4 15 GiB), hence the 10% slack.
std::optional<int> variant_for_memory(const std::vector<int>& variants, std::uint64_t memory_bytes) {
  const double gib = static_cast<double>(memory_bytes) / static_cast<double>(1ULL << 30);
  std::optional<int> best;
  for (int v : variants) {
    if (gib >= 0.9 * v) best = v;
  }
  return best;
}

std::string format_gib(std::uint64_t bytes) {
  const double gib = static_cast<double>(bytes) / static_cast<double>(1ULL << 30);
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", gib);
  return text;
}

std::string c_string(const char* buffer, std::size_t size) {
  return std::string(buffer, strnlen(buffer, size));
}

// The NVML entry points every query uses: start, stop, and the devices by index with their UUIDs
// (each null when the library lacks it).
struct NvmlDevices {
  NvmlInitFn init;
  NvmlShutdownFn shutdown;
  NvmlDeviceGetCountFn get_count;
  NvmlDeviceGetHandleByIndexFn get_handle;
  NvmlDeviceGetStringFn get_uuid;

  static NvmlDevices load(const util::DynamicLibrary& library) {
    return {library.symbol<NvmlInitFn>("nvmlInit_v2"), library.symbol<NvmlShutdownFn>("nvmlShutdown"),
            library.symbol<NvmlDeviceGetCountFn>("nvmlDeviceGetCount_v2"),
            library.symbol<NvmlDeviceGetHandleByIndexFn>("nvmlDeviceGetHandleByIndex_v2"),
            library.symbol<NvmlDeviceGetStringFn>("nvmlDeviceGetUUID")};
  }
};

// Lists devices through NVML; nullopt (with a note) when NVML cannot be used at all.
std::optional<std::vector<LocalDevice>> discover_nvml(const std::string& path, std::vector<std::string>& notes) {
  auto opened = util::DynamicLibrary::open(path);
  if (!opened) {
    notes.push_back("NVML: " + opened.error().message);
    return std::nullopt;
  }
  const util::DynamicLibrary& library = *opened;
  const auto [init, shutdown, get_count, get_handle, get_uuid] = NvmlDevices::load(library);
  auto error_string = library.symbol<NvmlErrorStringFn>("nvmlErrorString");
  auto get_name = library.symbol<NvmlDeviceGetStringFn>("nvmlDeviceGetName");
  auto get_memory = library.symbol<NvmlDeviceGetMemoryInfoFn>("nvmlDeviceGetMemoryInfo");
  auto get_pci = library.symbol<NvmlDeviceGetPciInfoFn>("nvmlDeviceGetPciInfo_v3");
  if (get_pci == nullptr) get_pci = library.symbol<NvmlDeviceGetPciInfoFn>("nvmlDeviceGetPciInfo_v2");

  const std::vector<std::pair<const char*, bool>> required{
      {"nvmlInit_v2", init != nullptr},
      {"nvmlShutdown", shutdown != nullptr},
      {"nvmlDeviceGetCount_v2", get_count != nullptr},
      {"nvmlDeviceGetHandleByIndex_v2", get_handle != nullptr},
      {"nvmlDeviceGetName", get_name != nullptr},
      {"nvmlDeviceGetUUID", get_uuid != nullptr},
      {"nvmlDeviceGetMemoryInfo", get_memory != nullptr},
  };
  for (const auto& [name, found] : required) {
    if (!found) {
      notes.push_back("NVML: " + path + " lacks " + name + "; it is not NVML or the driver is too old");
      return std::nullopt;
    }
  }
  auto describe = [&](NvmlReturn code) {
    const char* text = error_string != nullptr ? error_string(code) : nullptr;
    return std::string(text != nullptr ? text : "error") + " (NVML error " + std::to_string(code) + ")";
  };

  if (NvmlReturn rc = init(); rc != 0) {
    notes.push_back("NVML: nvmlInit_v2 failed: " + describe(rc));
    return std::nullopt;
  }
  std::vector<LocalDevice> devices;
  unsigned int count = 0;
  if (NvmlReturn rc = get_count(&count); rc != 0) {
    notes.push_back("NVML: nvmlDeviceGetCount_v2 failed: " + describe(rc));
    shutdown();
    return std::nullopt;
  }
  for (unsigned int i = 0; i < count; ++i) {
    const std::string where = "NVML: GPU " + std::to_string(i) + ": ";
    NvmlDevice device = nullptr;
    if (NvmlReturn rc = get_handle(i, &device); rc != 0) {
      notes.push_back(where + "nvmlDeviceGetHandleByIndex_v2 failed: " + describe(rc) + "; skipped");
      continue;
    }
    char name[nvml_string_buffer_size] = {};
    char uuid[nvml_string_buffer_size] = {};
    NvmlMemory memory{};
    if (NvmlReturn rc = get_name(device, name, sizeof name); rc != 0) {
      notes.push_back(where + "nvmlDeviceGetName failed: " + describe(rc) + "; skipped");
      continue;
    }
    if (NvmlReturn rc = get_uuid(device, uuid, sizeof uuid); rc != 0) {
      notes.push_back(where + "nvmlDeviceGetUUID failed: " + describe(rc) + "; skipped");
      continue;
    }
    if (NvmlReturn rc = get_memory(device, &memory); rc != 0) {
      notes.push_back(where + "nvmlDeviceGetMemoryInfo failed: " + describe(rc));
      memory.total = 0;
    }
    LocalDevice local;
    local.index = static_cast<int>(i);
    local.name = c_string(name, sizeof name);
    local.uuid = c_string(uuid, sizeof uuid);
    local.memory_bytes = memory.total;
    if (get_pci != nullptr) {
      NvmlPciInfo pci{};
      if (get_pci(device, &pci) == 0) local.pci_bus_id = c_string(pci.bus_id, sizeof pci.bus_id);
    }
    devices.push_back(std::move(local));
  }
  shutdown();
  return devices;
}

struct Captured {
  int status = -1;  // exit status, or -1 when it did not exit normally
  std::string output;
};

// Runs `argv` with stdout captured (stderr discarded); an error text when it cannot be started
// or runs past the timeout.
bool on_path(const std::string& program) {
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "/usr/bin:/bin";
  while (true) {
    const auto colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    if (dir.empty()) dir = ".";
    if (access((dir + "/" + program).c_str(), X_OK) == 0) return true;
    if (colon == std::string_view::npos) return false;
    rest.remove_prefix(colon + 1);
  }
}

util::Result<Captured> capture(const std::vector<std::string>& argv, int timeout_ms) {
  // Not spawning a program that is not there keeps probing cheap on machines without a driver.
  if (!on_path(argv[0])) return util::make_error(util::ExitCode::backend, std::strerror(ENOENT));
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return util::make_error(util::ExitCode::backend, std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (spawned != 0) {
    close(fds[0]);
    return util::make_error(util::ExitCode::backend, std::strerror(spawned));
  }
  Captured result;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd poller{fds[0], POLLIN, 0};
    const int ready = poll(&poller, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      timed_out = ready == 0;
      break;
    }
    char buffer[4096];
    const ssize_t n = read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buffer, static_cast<std::size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return util::make_error(util::ExitCode::backend,
                            "timed out after " + std::to_string(timeout_ms / 1000) + "s");
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::optional<std::vector<LocalDevice>> discover_nvidia_smi(const std::string& program,
                                                            std::vector<std::string>& notes) {
  auto run = capture({program, "--query-gpu=index,uuid,name,memory.total,pci.bus_id", "--format=csv,noheader"},
                     nvidia_smi_timeout_ms);
  if (!run) {
    notes.push_back("nvidia-smi: cannot run '" + program + "': " + run.error().message);
    return std::nullopt;
  }
  if (run->status != 0) {
    std::string first_line(util::trim(run->output.substr(0, run->output.find('\n'))));
    notes.push_back("nvidia-smi: '" + program + "' " +
                    (run->status < 0 ? std::string("was killed") : "exited with status " + std::to_string(run->status)) +
                    (first_line.empty() ? "" : ": " + first_line));
    return std::nullopt;
  }
  auto parsed = parse_nvidia_smi_csv(run->output);
  if (!parsed) {
    notes.push_back("nvidia-smi: " + parsed.error().message);
    return std::nullopt;
  }
  return std::move(parsed).value();
}

// The pids of one device's compute processes; nullopt when NVML will not say.
std::optional<std::vector<long>> nvml_device_pids(NvmlDeviceGetProcessesFn get_processes, NvmlDevice device) {
  std::vector<NvmlProcessInfo> infos(64);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto count = static_cast<unsigned int>(infos.size());
    const NvmlReturn rc = get_processes(device, &count, infos.data());
    if (rc == nvml_insufficient_size) {
      infos.resize(static_cast<std::size_t>(count) + 16);
      continue;
    }
    if (rc != 0) return std::nullopt;
    std::vector<long> pids;
    for (unsigned int i = 0; i < count && i < infos.size(); ++i) pids.push_back(static_cast<long>(infos[i].pid));
    std::sort(pids.begin(), pids.end());
    return pids;
  }
  return std::nullopt;
}

// Compute processes through NVML; nullopt when NVML or its process query cannot be used.
std::optional<std::vector<DeviceProcesses>> nvml_compute_processes(const std::string& path) {
  auto opened = util::DynamicLibrary::open(path);
  if (!opened) return std::nullopt;
  const util::DynamicLibrary& library = *opened;
  const auto [init, shutdown, get_count, get_handle, get_uuid] = NvmlDevices::load(library);
  auto get_processes = library.symbol<NvmlDeviceGetProcessesFn>("nvmlDeviceGetComputeRunningProcesses_v3");
  if (get_processes == nullptr) get_processes = library.symbol<NvmlDeviceGetProcessesFn>("nvmlDeviceGetComputeRunningProcesses_v2");
  if (!init || !shutdown || !get_count || !get_handle || !get_uuid || !get_processes) return std::nullopt;
  if (init() != 0) return std::nullopt;
  std::optional<std::vector<DeviceProcesses>> found = std::vector<DeviceProcesses>{};
  unsigned int count = 0;
  if (get_count(&count) != 0) found.reset();
  for (unsigned int i = 0; found && i < count; ++i) {
    NvmlDevice device = nullptr;
    char uuid[nvml_string_buffer_size] = {};
    if (get_handle(i, &device) != 0 || get_uuid(device, uuid, sizeof uuid) != 0) continue;
    auto pids = nvml_device_pids(get_processes, device);
    if (!pids) {
      found.reset();  // a device NVML cannot answer for: let nvidia-smi try
    } else if (!pids->empty()) {
      found->push_back(DeviceProcesses{static_cast<int>(i), c_string(uuid, sizeof uuid), std::move(*pids)});
    }
  }
  shutdown();
  return found;
}

// Compute processes through nvidia-smi; empty when it cannot run or says something else.
std::vector<DeviceProcesses> nvidia_smi_compute_processes(const std::string& program) {
  auto run = capture({program, "--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader"}, nvidia_smi_timeout_ms);
  if (!run || run->status != 0) return {};
  auto parsed = parse_compute_apps_csv(run->output);
  return parsed ? std::move(parsed).value() : std::vector<DeviceProcesses>{};
}

std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

const NameEntry* find_name(std::string_view name) {
  const std::string_view stripped = strip_prefix(util::trim(name));
  for (const auto& candidate : name_table) {
    if (util::iequals(candidate.name, stripped)) return &candidate;
  }
  return nullptr;
}

// One line of nvidia-smi's CSV output: how errors name it, and its comma-separated fields.
struct CsvRow {
  std::string where;  // "output line N '<line>': "
  std::vector<std::string> fields;
};

// The non-empty lines of nvidia-smi's `--format=csv,noheader` output.
std::vector<CsvRow> csv_rows(std::string_view text) {
  std::vector<CsvRow> rows;
  const auto lines = util::split(text, '\n');
  for (std::size_t n = 0; n < lines.size(); ++n) {
    const std::string_view line = util::trim(lines[n]);
    if (line.empty()) continue;
    rows.push_back({"output line " + std::to_string(n + 1) + " '" + std::string(line) + "': ", util::split(line, ',')});
  }
  return rows;
}

}  // namespace

std::optional<std::pair<std::string, int>> map_device_name(std::string_view name, std::uint64_t memory_bytes) {
  const NameEntry* entry = find_name(name);
  if (entry == nullptr) return std::nullopt;
  const std::vector<int>* variants = type_variants(entry->type);
  if (variants == nullptr) return std::nullopt;
  std::optional<int> memory_gb;
  if (memory_bytes > 0) {
    memory_gb = variant_for_memory(*variants, memory_bytes);
  } else if (entry->memory_hint_gb > 0) {
    memory_gb = entry->memory_hint_gb;
  } else if (variants->size() == 1) {
    memory_gb = variants->front();
  }
  if (!memory_gb) return std::nullopt;
  return std::pair<std::string, int>(std::string(entry->type), *memory_gb);
}

DiscoveryOptions discovery_options_from_env() {
  return DiscoveryOptions{env_or("GPURUN_NVML_LIBRARY", ""), env_or("GPURUN_NVIDIA_SMI", "")};
}

std::vector<std::string> map_devices(std::vector<LocalDevice>& devices) {
  std::vector<std::string> notes;
  for (auto& device : devices) {
    if (auto mapped = map_device_name(device.name, device.memory_bytes)) {
      device.type = mapped->first;
      device.memory_gb = mapped->second;
      continue;
    }
    device.type.reset();
    device.memory_gb = 0;
    const std::string memory = device.memory_bytes > 0 ? ", " + format_gib(device.memory_bytes) : "";
    const NameEntry* entry = find_name(device.name);
    const std::string why = entry == nullptr      ? "is not a GPU type of the catalog"
                            : device.memory_bytes == 0 ? "reports no memory size to pick its " + std::string(entry->type) + " variant by"
                                                       : "has less memory than any " + std::string(entry->type) + " variant";
    notes.push_back("GPU " + std::to_string(device.index) + " '" + device.name + "' (" + device.uuid + memory + ") " +
                    why + "; it is not used");
  }
  return notes;
}

Discovery discover_local_gpus(const DiscoveryOptions& options) {
  Discovery discovery;
  const std::string nvml = options.nvml_library.empty() ? "libnvidia-ml.so.1" : options.nvml_library;
  const std::string smi = options.nvidia_smi.empty() ? "nvidia-smi" : options.nvidia_smi;
  std::optional<std::vector<LocalDevice>> devices = discover_nvml(nvml, discovery.notes);
  if (devices) {
    discovery.source = "nvml";
  } else if ((devices = discover_nvidia_smi(smi, discovery.notes))) {
    discovery.source = "nvidia-smi";
  } else {
    discovery.source = "none";
    return discovery;
  }
  discovery.devices = std::move(*devices);
  for (auto& note : map_devices(discovery.devices)) discovery.notes.push_back(std::move(note));
  return discovery;
}

std::vector<DeviceProcesses> find_compute_processes(const DiscoveryOptions& options) {
  const std::string nvml = options.nvml_library.empty() ? "libnvidia-ml.so.1" : options.nvml_library;
  const std::string smi = options.nvidia_smi.empty() ? "nvidia-smi" : options.nvidia_smi;
  if (auto found = nvml_compute_processes(nvml)) return std::move(*found);
  return nvidia_smi_compute_processes(smi);
}

util::Result<std::vector<DeviceProcesses>> parse_compute_apps_csv(std::string_view text) {
  std::vector<DeviceProcesses> devices;
  for (const auto& [where, fields] : csv_rows(text)) {
    if (fields.size() != 2 || util::trim(fields[0]).empty()) {
      return util::make_error(util::ExitCode::backend, where + "expected 'gpu_uuid, pid'");
    }
    const std::string uuid(util::trim(fields[0]));
    const std::string_view pid_text = util::trim(fields[1]);
    const auto pid = util::parse_uint(pid_text);
    // Inside a container nvidia-smi may not know the pid: the device is still in use.
    if (!pid && pid_text != "[N/A]") return util::make_error(util::ExitCode::backend, where + "bad pid");
    auto same = std::find_if(devices.begin(), devices.end(), [&](const DeviceProcesses& d) { return d.uuid == uuid; });
    if (same == devices.end()) same = devices.insert(devices.end(), DeviceProcesses{-1, uuid, {}});
    if (pid && std::find(same->pids.begin(), same->pids.end(), static_cast<long>(*pid)) == same->pids.end()) {
      same->pids.insert(std::upper_bound(same->pids.begin(), same->pids.end(), static_cast<long>(*pid)), static_cast<long>(*pid));
    }
  }
  return devices;
}

Discovery discover_local_gpus() { return discover_local_gpus(discovery_options_from_env()); }

util::Result<std::vector<LocalDevice>> parse_nvidia_smi_csv(std::string_view text) {
  std::vector<LocalDevice> devices;
  for (const auto& [where, fields] : csv_rows(text)) {
    if (fields.size() != 4 && fields.size() != 5) {
      return util::make_error(util::ExitCode::backend,
                              where + "expected 'index, uuid, name, memory.total[, pci.bus_id]'");
    }
    LocalDevice device;
    const auto index = util::parse_uint(util::trim(fields[0]));
    if (!index || *index > 1'000'000) return util::make_error(util::ExitCode::backend, where + "bad index");
    device.index = static_cast<int>(*index);
    device.uuid = util::trim(fields[1]);
    device.name = util::trim(fields[2]);
    std::string_view memory = util::trim(fields[3]);
    if (memory != "[N/A]") {
      const auto space = memory.find(' ');
      const std::string_view number = memory.substr(0, space);
      const std::string_view unit = space == std::string_view::npos ? "MiB" : util::trim(memory.substr(space));
      const auto mib = util::parse_uint(number);
      if (!mib || unit != "MiB") {
        return util::make_error(util::ExitCode::backend, where + "bad memory.total '" + std::string(memory) + "'");
      }
      device.memory_bytes = static_cast<std::uint64_t>(*mib) << 20;
    }
    if (fields.size() == 5) device.pci_bus_id = util::trim(fields[4]);
    if (device.uuid.empty() || device.name.empty()) {
      return util::make_error(util::ExitCode::backend, where + "empty uuid or name");
    }
    devices.push_back(std::move(device));
  }
  return devices;
}

std::vector<LocalDevice> declared_devices(const std::vector<DeclaredGpu>& declared) {
  std::vector<LocalDevice> devices;
  for (const auto& gpu : declared) {
    for (int i = 0; i < gpu.count; ++i) {
      LocalDevice device;
      device.index = static_cast<int>(devices.size());
      device.uuid = "GPU-declared-" + std::to_string(device.index);
      device.name = gpu.type + "-" + std::to_string(gpu.memory_gb) + "GB";
      device.memory_bytes = static_cast<std::uint64_t>(gpu.memory_gb) << 30;
      device.type = gpu.type;
      device.memory_gb = gpu.memory_gb;
      devices.push_back(std::move(device));
    }
  }
  return devices;
}

}  // namespace gpurun::gpu
