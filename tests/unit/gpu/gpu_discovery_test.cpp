#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gpu/discovery.hpp"

using namespace gpurun::gpu;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t mib = 1ULL << 20;
constexpr std::uint64_t gib = 1ULL << 30;

using Mapped = std::optional<std::pair<std::string, int>>;
Mapped mapped(const char* type, int memory_gb) { return std::pair<std::string, int>(type, memory_gb); }

// A temp dir of the test's own, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "gpurun-discovery-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes an executable sh script standing in for nvidia-smi.
  std::string script(const std::string& name, const std::string& body) const {
    const fs::path file = path / name;
    std::ofstream(file) << "#!/bin/sh\n" << body;
    REQUIRE(chmod(file.c_str(), 0755) == 0);
    return file.string();
  }
};

// Sets (or unsets, for nullptr) an environment variable for one scope.
struct ScopedEnv {
  std::string name;
  std::optional<std::string> saved;
  ScopedEnv(const char* variable, const char* value) : name(variable) {
    if (const char* old = std::getenv(variable)) saved = old;
    if (value != nullptr) {
      setenv(variable, value, 1);
    } else {
      unsetenv(variable);
    }
  }
  ~ScopedEnv() {
    if (saved) {
      setenv(name.c_str(), saved->c_str(), 1);
    } else {
      unsetenv(name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};

const char* const fake_smi_ok =
    "[ \"$1\" = --query-gpu=index,uuid,name,memory.total,pci.bus_id ] && [ \"$2\" = --format=csv,noheader ] || exit 2\n"
    "echo '0, GPU-11111111-aaaa, NVIDIA H100 80GB HBM3, 81559 MiB, 00000000:18:00.0'\n"
    "echo '1, GPU-22222222-bbbb, NVIDIA GeForce RTX 4090, 23028 MiB, 00000000:2A:00.0'\n";

}  // namespace

TEST_CASE("map_device_name covers PCIe, SXM and NVL names of every catalog type") {
  CHECK(map_device_name("Tesla T4", 15360 * mib) == mapped("T4", 16));
  CHECK(map_device_name("NVIDIA T4", 15360 * mib) == mapped("T4", 16));
  CHECK(map_device_name("NVIDIA A10G", 23028 * mib) == mapped("A10G", 24));
  CHECK(map_device_name("NVIDIA L4", 23034 * mib) == mapped("L4", 24));
  CHECK(map_device_name("NVIDIA A100-SXM4-40GB", 40960 * mib) == mapped("A100", 40));
  CHECK(map_device_name("NVIDIA A100-SXM4-80GB", 81920 * mib) == mapped("A100", 80));
  CHECK(map_device_name("NVIDIA A100-PCIE-40GB", 40536 * mib) == mapped("A100", 40));
  CHECK(map_device_name("NVIDIA A100-PCIE-80GB", 81920 * mib) == mapped("A100", 80));
  CHECK(map_device_name("NVIDIA A100 80GB PCIe", 81920 * mib) == mapped("A100", 80));
  CHECK(map_device_name("NVIDIA A100-SXM-80GB", 81920 * mib) == mapped("A100", 80));
  CHECK(map_device_name("A100-SXM4-40GB", 40960 * mib) == mapped("A100", 40));  // older drivers: no prefix
  CHECK(map_device_name("NVIDIA A100", 20 * gib) == mapped("A100", 20));
  CHECK(map_device_name("NVIDIA L40S", 46068 * mib) == mapped("L40S", 48));
  CHECK(map_device_name("NVIDIA H100", 81559 * mib) == mapped("H100", 80));
  CHECK(map_device_name("NVIDIA H100 80GB HBM3", 81559 * mib) == mapped("H100", 80));
  CHECK(map_device_name("NVIDIA H100 PCIe", 81559 * mib) == mapped("H100", 80));
  CHECK(map_device_name("NVIDIA H100 NVL", 95830 * mib) == mapped("H100", 94));
  CHECK(map_device_name("NVIDIA H100 NVL", 0) == mapped("H100", 94));
  CHECK(map_device_name("NVIDIA H200", 143771 * mib) == mapped("H200", 141));
  CHECK(map_device_name("NVIDIA H200 NVL", 143771 * mib) == mapped("H200", 141));
  CHECK(map_device_name("NVIDIA A10", 23028 * mib) == mapped("A10", 24));
  CHECK(map_device_name("Tesla V100-SXM2-16GB", 16384 * mib) == mapped("V100", 16));
  CHECK(map_device_name("Tesla V100-SXM2-32GB", 32768 * mib) == mapped("V100", 32));
  CHECK(map_device_name("Tesla V100-PCIE-32GB", 0) == mapped("V100", 32));
  CHECK(map_device_name("NVIDIA A40", 46068 * mib) == mapped("A40", 48));
  CHECK(map_device_name("NVIDIA L40", 46068 * mib) == mapped("L40", 48));
  CHECK(map_device_name("NVIDIA RTX A6000", 49140 * mib) == mapped("A6000", 48));
  CHECK(map_device_name("NVIDIA RTX 6000 Ada Generation", 49140 * mib) == mapped("RTX6000Ada", 48));
  CHECK(map_device_name("NVIDIA RTX PRO 6000 Blackwell Server Edition", 97887 * mib) == mapped("RTXPRO6000", 96));
  CHECK(map_device_name("NVIDIA GH200 480GB", 97871 * mib) == mapped("GH200", 96));
  CHECK(map_device_name("NVIDIA GH200 144G HBM3e", 146831 * mib) == mapped("GH200", 144));
  CHECK(map_device_name("NVIDIA B200", 183359 * mib) == mapped("B200", 180));
}

TEST_CASE("map_device_name picks the A100 variant by memory, else by name") {
  CHECK(map_device_name("NVIDIA A100-SXM4-40GB", 81920 * mib) == mapped("A100", 80));  // memory wins
  CHECK(map_device_name("NVIDIA A100-SXM4-80GB", 0) == mapped("A100", 80));
  CHECK(map_device_name("NVIDIA A100-PCIE-40GB", 0) == mapped("A100", 40));
  CHECK(map_device_name("Tesla T4", 0) == mapped("T4", 16));
  CHECK(map_device_name("NVIDIA A100", 0) == std::nullopt);
  CHECK(map_device_name("NVIDIA A100-SXM4-40GB", 10 * gib) == std::nullopt);
  CHECK(map_device_name("NVIDIA H100 PCIe", 40 * gib) == std::nullopt);
  CHECK(map_device_name("  nvidia a10g ", 23028 * mib) == mapped("A10G", 24));
}

TEST_CASE("map_device_name does not guess unknown names") {
  CHECK(map_device_name("NVIDIA GeForce RTX 4090", 24564 * mib) == std::nullopt);
  CHECK(map_device_name("Tesla P100-PCIE-16GB", 16384 * mib) == std::nullopt);
  CHECK(map_device_name("NVIDIA A10M", 23028 * mib) == std::nullopt);
  CHECK(map_device_name("NVIDIA", 0) == std::nullopt);
  CHECK(map_device_name("", 0) == std::nullopt);
}

TEST_CASE("parse_nvidia_smi_csv reads the query output") {
  auto parsed = parse_nvidia_smi_csv(
      "0, GPU-aaa, NVIDIA A100-SXM4-40GB, 40960 MiB, 00000000:07:00.0\n"
      "\n"
      "1, GPU-bbb, Tesla T4, [N/A]\n");
  REQUIRE(parsed.ok());
  REQUIRE(parsed->size() == 2);
  CHECK((*parsed)[0] == LocalDevice{0, "GPU-aaa", "NVIDIA A100-SXM4-40GB", 40960 * mib, "00000000:07:00.0", std::nullopt, 0});
  CHECK((*parsed)[1] == LocalDevice{1, "GPU-bbb", "Tesla T4", 0, "", std::nullopt, 0});
  CHECK(parse_nvidia_smi_csv("").value().empty());

  auto fields = parse_nvidia_smi_csv("0, GPU-aaa, Tesla T4\n");
  REQUIRE_FALSE(fields.ok());
  CHECK(fields.error().message ==
        "output line 1 '0, GPU-aaa, Tesla T4': expected 'index, uuid, name, memory.total[, pci.bus_id]'");
  auto memory = parse_nvidia_smi_csv("0, GPU-aaa, Tesla T4, 15360 MiB\n1, GPU-bbb, Tesla T4, 15 GB\n");
  REQUIRE_FALSE(memory.ok());
  CHECK(memory.error().message == "output line 2 '1, GPU-bbb, Tesla T4, 15 GB': bad memory.total '15 GB'");
  auto index = parse_nvidia_smi_csv("x, GPU-aaa, Tesla T4, 15360 MiB");
  REQUIRE_FALSE(index.ok());
  CHECK(index.error().message == "output line 1 'x, GPU-aaa, Tesla T4, 15360 MiB': bad index");
}

TEST_CASE("parse_compute_apps_csv groups the compute apps by device") {
  auto parsed = parse_compute_apps_csv(
      "GPU-bbb, 4242\n"
      "\n"
      "GPU-aaa, 17\n"
      "GPU-bbb, 99\n"
      "GPU-bbb, 4242\n"
      "GPU-ccc, [N/A]\n");
  REQUIRE(parsed.ok());
  CHECK(*parsed == std::vector<DeviceProcesses>{{-1, "GPU-bbb", {99, 4242}}, {-1, "GPU-aaa", {17}}, {-1, "GPU-ccc", {}}});
  CHECK(parse_compute_apps_csv("").value().empty());

  auto fields = parse_compute_apps_csv("GPU-aaa, 17, python\n");
  REQUIRE_FALSE(fields.ok());
  CHECK(fields.error().message == "output line 1 'GPU-aaa, 17, python': expected 'gpu_uuid, pid'");
  auto pid = parse_compute_apps_csv("GPU-aaa, 17\nGPU-bbb, x\n");
  REQUIRE_FALSE(pid.ok());
  CHECK(pid.error().message == "output line 2 'GPU-bbb, x': bad pid");
  auto words = parse_compute_apps_csv("No running processes found\n");
  REQUIRE_FALSE(words.ok());
  CHECK(words.error().message == "output line 1 'No running processes found': expected 'gpu_uuid, pid'");
}

TEST_CASE("find_compute_processes asks NVML, else nvidia-smi, else reports none") {
  TempDir dir;
  ScopedEnv devices("FAKE_NVML_DEVICES", "Tesla T4:15360:GPU-aaa;Tesla T4:15360:GPU-bbb;Tesla T4:15360:GPU-ccc");
  const std::string smi = dir.script("nvidia-smi",
                                     "[ \"$1\" = --query-compute-apps=gpu_uuid,pid ] || exit 3\n"
                                     "echo 'GPU-ccc, 5'\n");
  SUBCASE("NVML, many pids on one device") {
    std::string many = "GPU-bbb:";
    for (int pid = 1000; pid < 1100; ++pid) many += std::to_string(pid) + (pid < 1099 ? "," : "");
    ScopedEnv processes("FAKE_NVML_PROCESSES", (many + ";GPU-aaa:42").c_str());
    ScopedEnv fail("FAKE_NVML_FAIL", nullptr);
    const auto found = find_compute_processes({GPURUN_FAKE_NVML, smi});
    REQUIRE(found.size() == 2);
    CHECK(found[0] == DeviceProcesses{0, "GPU-aaa", {42}});
    CHECK(found[1].index == 1);
    CHECK(found[1].uuid == "GPU-bbb");
    CHECK(found[1].pids.size() == 100);  // more than the first buffer holds: asked again with room
    CHECK(found[1].pids.front() == 1000);
  }
  SUBCASE("nvidia-smi when NVML fails") {
    ScopedEnv fail("FAKE_NVML_FAIL", "9");
    CHECK(find_compute_processes({GPURUN_FAKE_NVML, smi}) == std::vector<DeviceProcesses>{{-1, "GPU-ccc", {5}}});
  }
  SUBCASE("neither: none, not an error") {
    ScopedEnv fail("FAKE_NVML_FAIL", "9");
    CHECK(find_compute_processes({GPURUN_FAKE_NVML, (dir.path / "nvidia-smi-missing").string()}).empty());
    CHECK(find_compute_processes({GPURUN_FAKE_NVML, dir.script("failing-smi", "echo oops; exit 9\n")}).empty());
  }
}

TEST_CASE("map_devices fills catalog types and notes the others") {
  std::vector<LocalDevice> devices{{0, "GPU-a", "NVIDIA L4", 23034 * mib, "", std::nullopt, 0},
                                   {1, "GPU-b", "NVIDIA GeForce RTX 4090", 23028 * mib, "", "A10G", 24},
                                   {2, "GPU-c", "NVIDIA A100", 0, "", std::nullopt, 0},
                                   {3, "GPU-d", "NVIDIA H100 PCIe", 8 * gib, "", std::nullopt, 0}};
  const auto notes = map_devices(devices);
  CHECK(devices[0].type == std::optional<std::string>("L4"));
  CHECK(devices[0].memory_gb == 24);
  CHECK(devices[1].type == std::nullopt);
  CHECK(devices[1].memory_gb == 0);
  CHECK(notes == std::vector<std::string>{
                     "GPU 1 'NVIDIA GeForce RTX 4090' (GPU-b, 22.5 GiB) is not a GPU type of the catalog; it is not used",
                     "GPU 2 'NVIDIA A100' (GPU-c) reports no memory size to pick its A100 variant by; it is not used",
                     "GPU 3 'NVIDIA H100 PCIe' (GPU-d, 8.0 GiB) has less memory than any H100 variant; it is not used"});
}

TEST_CASE("discovery through NVML lists devices with types, bus ids and notes") {
  TempDir dir;
  ScopedEnv devices("FAKE_NVML_DEVICES",
                    "NVIDIA A100-SXM4-40GB:40960:GPU-aaa;Tesla T4:15360:GPU-bbb;NVIDIA GeForce RTX 4090:24564:GPU-ccc");
  ScopedEnv fail("FAKE_NVML_FAIL", nullptr);
  const Discovery found = discover_local_gpus({GPURUN_FAKE_NVML, (dir.path / "no-nvidia-smi").string()});
  CHECK(found.source == "nvml");
  REQUIRE(found.devices.size() == 3);
  CHECK(found.devices[0] ==
        LocalDevice{0, "GPU-aaa", "NVIDIA A100-SXM4-40GB", 40960 * mib, "00000000:10:00.0", "A100", 40});
  CHECK(found.devices[1] == LocalDevice{1, "GPU-bbb", "Tesla T4", 15360 * mib, "00000000:11:00.0", "T4", 16});
  CHECK(found.devices[2] ==
        LocalDevice{2, "GPU-ccc", "NVIDIA GeForce RTX 4090", 24564 * mib, "00000000:12:00.0", std::nullopt, 0});
  CHECK(found.notes == std::vector<std::string>{"GPU 2 'NVIDIA GeForce RTX 4090' (GPU-ccc, 24.0 GiB) is not a GPU "
                                                "type of the catalog; it is not used"});
}

TEST_CASE("discovery through NVML with no devices reports none, without falling back") {
  TempDir dir;
  ScopedEnv devices("FAKE_NVML_DEVICES", "");
  ScopedEnv fail("FAKE_NVML_FAIL", nullptr);
  const std::string smi = dir.script("nvidia-smi", fake_smi_ok);
  const Discovery found = discover_local_gpus({GPURUN_FAKE_NVML, smi});
  CHECK(found.source == "nvml");
  CHECK(found.devices.empty());
  CHECK(found.notes.empty());
}

TEST_CASE("discovery falls back to nvidia-smi when nvmlInit fails") {
  TempDir dir;
  ScopedEnv devices("FAKE_NVML_DEVICES", "Tesla T4:15360:GPU-bbb");
  ScopedEnv fail("FAKE_NVML_FAIL", "9");
  const std::string smi = dir.script("nvidia-smi", fake_smi_ok);
  const Discovery found = discover_local_gpus({GPURUN_FAKE_NVML, smi});
  CHECK(found.source == "nvidia-smi");
  REQUIRE(found.devices.size() == 2);
  CHECK(found.devices[0] ==
        LocalDevice{0, "GPU-11111111-aaaa", "NVIDIA H100 80GB HBM3", 81559 * mib, "00000000:18:00.0", "H100", 80});
  CHECK(found.devices[1].type == std::nullopt);
  CHECK(found.notes == std::vector<std::string>{
                           "NVML: nvmlInit_v2 failed: Driver Not Loaded (NVML error 9)",
                           "GPU 1 'NVIDIA GeForce RTX 4090' (GPU-22222222-bbbb, 22.5 GiB) is not a GPU type of the catalog; it is not used"});
}

TEST_CASE("discovery reports none with the reasons when neither NVML nor nvidia-smi work") {
  TempDir dir;
  ScopedEnv fail("FAKE_NVML_FAIL", "12");
  const std::string missing_lib = (dir.path / "libnvidia-ml.so.1").string();
  const std::string missing_smi = (dir.path / "nvidia-smi").string();

  SUBCASE("library and program missing") {
    const Discovery found = discover_local_gpus({missing_lib, missing_smi});
    CHECK(found.source == "none");
    CHECK(found.devices.empty());
    CHECK(found.notes == std::vector<std::string>{
                             "NVML: cannot load " + missing_lib + ": cannot open shared object file: No such file or directory",
                             "nvidia-smi: cannot run '" + missing_smi + "': No such file or directory"});
  }
  SUBCASE("driver not loaded: nvmlInit fails and nvidia-smi exits non-zero") {
    const std::string smi = dir.script(
        "nvidia-smi",
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\n"
        "echo 'Make sure that the latest NVIDIA driver is installed and running.'\nexit 9\n");
    const Discovery found = discover_local_gpus({GPURUN_FAKE_NVML, smi});
    CHECK(found.source == "none");
    CHECK(found.notes == std::vector<std::string>{
                             "NVML: nvmlInit_v2 failed: Unknown Error (NVML error 12)",
                             "nvidia-smi: '" + smi +
                                 "' exited with status 9: NVIDIA-SMI has failed because it couldn't communicate with "
                                 "the NVIDIA driver."});
  }
  SUBCASE("a library that is not NVML, and garbage from nvidia-smi") {
    const std::string smi = dir.script("nvidia-smi", "echo 'Unknown option'\n");
    const Discovery found = discover_local_gpus({"libz.so.1", smi});
    CHECK(found.source == "none");
    CHECK(found.notes == std::vector<std::string>{
                             "NVML: libz.so.1 lacks nvmlInit_v2; it is not NVML or the driver is too old",
                             "nvidia-smi: output line 1 'Unknown option': expected 'index, uuid, name, "
                             "memory.total[, pci.bus_id]'"});
  }
}

TEST_CASE("discover_local_gpus() reads GPURUN_NVML_LIBRARY and GPURUN_NVIDIA_SMI") {
  TempDir dir;
  ScopedEnv library("GPURUN_NVML_LIBRARY", GPURUN_FAKE_NVML);
  ScopedEnv smi("GPURUN_NVIDIA_SMI", dir.script("nvidia-smi", fake_smi_ok).c_str());
  ScopedEnv devices("FAKE_NVML_DEVICES", "NVIDIA L40S:46068:GPU-l40s");
  {
    ScopedEnv fail("FAKE_NVML_FAIL", nullptr);
    const Discovery found = discover_local_gpus();
    CHECK(found.source == "nvml");
    REQUIRE(found.devices.size() == 1);
    CHECK(found.devices[0].type == std::optional<std::string>("L40S"));
    CHECK(found.devices[0].memory_gb == 48);
  }
  {
    ScopedEnv fail("FAKE_NVML_FAIL", "9");
    const Discovery found = discover_local_gpus();
    CHECK(found.source == "nvidia-smi");
    CHECK(found.devices.size() == 2);
  }
  const DiscoveryOptions options = discovery_options_from_env();
  CHECK(options.nvml_library == GPURUN_FAKE_NVML);
  CHECK(options.nvidia_smi == (dir.path / "nvidia-smi").string());
}

TEST_CASE("declared_devices synthesizes devices in order") {
  const auto devices = declared_devices({{"T4", 16, 2}, {"A100", 40, 1}});
  REQUIRE(devices.size() == 3);
  CHECK(devices[0] == LocalDevice{0, "GPU-declared-0", "T4-16GB", 16 * gib, "", "T4", 16});
  CHECK(devices[1] == LocalDevice{1, "GPU-declared-1", "T4-16GB", 16 * gib, "", "T4", 16});
  CHECK(devices[2] == LocalDevice{2, "GPU-declared-2", "A100-40GB", 40 * gib, "", "A100", 40});
  CHECK(declared_devices({}).empty());
  CHECK(declared_devices({{"L4", 24, 0}}).empty());
}
