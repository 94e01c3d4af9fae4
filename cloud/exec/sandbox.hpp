#pragma once

// Running a command inside an unpacked image root filesystem with bubblewrap, the way the local
// backend and Slurm nodes (`gpurun node-exec`) both do it.

#include <string>
#include <utility>
#include <vector>

#include "util/result.hpp"

namespace gpurun::cloud {

// Where the NVIDIA driver's libraries appear inside an image run (prepend it to LD_LIBRARY_PATH).
inline constexpr const char* image_driver_dir = "/usr/local/nvidia/lib64";

// `name` found in this process's PATH (an image's PATH must not decide which bwrap runs); `name`
// itself when not found.
std::string host_program(const std::string& name);

// The NVIDIA driver's user-space libraries (libcuda.so*, libnvidia-*.so*) as `ldconfig -p` lists
// them; empty where there is no driver.
std::vector<std::string> driver_libraries();

// The bwrap command line running `argv` over a view of the host (its root's entries bound one by
// one, network and devices shared) with each bind at its path, in `cwd`. A mount point missing
// on the host is made inside the sandbox (its deepest existing parent rebuilt as a tmpfs of
// binds), never on the host.
std::vector<std::string> host_sandbox_argv(const std::vector<std::pair<std::string, std::string>>& binds,
                                           const std::string& cwd, const std::vector<std::string>& argv);

struct ImageSandbox {
  std::string rootfs;   // the image's unpacked root filesystem, the run's `/`
  std::string workdir;  // the image's WorkingDir (empty: `/`)
  std::vector<std::pair<std::string, std::string>> binds;  // host path -> path inside
  bool gpus = false;    // bind /dev/nvidia* and the driver's libraries (nvidia-container-toolkit style)
};

// The bwrap command line running `argv` in `sandbox`: the rootfs read-only once mount points are
// made, a tmpfs /tmp, fresh /proc and /dev, the host network, the binds at their paths.
std::vector<std::string> image_sandbox_argv(const ImageSandbox& sandbox, const std::vector<std::string>& argv);

// `vars` as "K=V" strings; with `driver_libraries`, image_driver_dir first in LD_LIBRARY_PATH.
std::vector<std::string> environ_entries(std::vector<std::pair<std::string, std::string>> vars, bool driver_libraries);

// The variable the Slurm job carries with the names (comma-separated) of the function's own
// variables and secrets, which reach a workload run inside an image.
inline constexpr const char* pass_env_variable = "GPURUN_PASS_ENV";

// The variable the Slurm job carries with the names (comma-separated) of the variables whose values
// are secrets: `gpurun node-exec` masks those values in the run's log.
inline constexpr const char* mask_env_variable = "GPURUN_MASK_ENV";

// The non-empty values in `job_environ` ("K=V") of the variables named in GPURUN_MASK_ENV.
std::vector<std::string> masked_values(const std::vector<std::string>& job_environ);

// The environment ("K=V") of a workload run inside an image on a node: the image's Env, then
// from `job_environ` the variables named in GPURUN_PASS_ENV and those Slurm, CUDA and gpurun set
// (SLURM_*, CUDA_*, NVIDIA_*, GPURUN_* but never the registry login); with `gpus`, the driver
// library directory first in LD_LIBRARY_PATH.
std::vector<std::string> image_environment(const std::vector<std::pair<std::string, std::string>>& image_env,
                                           const std::vector<std::string>& job_environ, bool gpus);

// What bubblewrap reports on --json-status-fd: it writes the workload's exit code only when the
// sandbox was set up and the command ran, which tells bwrap's own failures from the workload's.
class SandboxStatus {
 public:
  // A pipe for bubblewrap's status; `bwrap_argv` (a sandbox command line) gets --json-status-fd.
  static util::Result<SandboxStatus> attach(std::vector<std::string>& bwrap_argv);
  SandboxStatus(SandboxStatus&& other) noexcept;
  SandboxStatus& operator=(SandboxStatus&&) = delete;
  SandboxStatus(const SandboxStatus&) = delete;
  SandboxStatus& operator=(const SandboxStatus&) = delete;
  ~SandboxStatus();
  // Closes this process's copy of the write end; call once bubblewrap was started.
  void started();
  // After bubblewrap exited: true when it reported the workload's exit code.
  bool workload_ran();

 private:
  SandboxStatus(int read_fd, int write_fd) : read_fd_(read_fd), write_fd_(write_fd) {}
  int read_fd_ = -1;
  int write_fd_ = -1;
};

// How a run ends when bubblewrap failed before its workload ran: exit code 125 (gpurun's own
// failure; 127 when the command cannot be executed) and bwrap's last message from `stderr_tail`.
struct SandboxFailure {
  int exit_code = 125;
  std::string reason;
};
SandboxFailure sandbox_failure(const std::string& stderr_tail);

}  // namespace gpurun::cloud
