// Shared by the CUDA sample workloads: exit codes and CUDA error reporting.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace gpurun_workload {

// Exit codes: 0 success, 1 wrong result or a CUDA failure while running, 2 bad usage,
// 3 no usable GPU (no driver, a driver older than this runtime, or no device).
constexpr int exit_wrong = 1;
constexpr int exit_usage = 2;
constexpr int exit_no_gpu = 3;

// Counts the visible devices; on failure prints why (naming the CUDA error) and exits with
// exit_no_gpu when there is no usable driver or device, else exit_wrong.
inline int device_count_or_exit(const char* program) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error == cudaSuccess && count > 0) return count;
  int driver = 0;
  cudaDriverGetVersion(&driver);
  const int runtime = CUDART_VERSION;
  if (error == cudaErrorInsufficientDriver && driver == 0) {
    std::fprintf(stderr,
                 "%s: no CUDA driver found (%s: %s); this machine needs an NVIDIA GPU with its driver "
                 "(libcuda.so.1)\n",
                 program, cudaGetErrorName(error), cudaGetErrorString(error));
  } else if (error == cudaErrorInsufficientDriver) {
    std::fprintf(stderr,
                 "%s: the CUDA driver is too old (%s: driver supports CUDA %d.%d, this program needs %d.%d); "
                 "update the NVIDIA driver\n",
                 program, cudaGetErrorName(error), driver / 1000, driver % 1000 / 10, runtime / 1000,
                 runtime % 1000 / 10);
  } else if (error == cudaErrorNoDevice || (error == cudaSuccess && count == 0)) {
    std::fprintf(stderr, "%s: no CUDA device found (%s: %s); check CUDA_VISIBLE_DEVICES and nvidia-smi\n", program,
                 cudaGetErrorName(cudaErrorNoDevice), cudaGetErrorString(cudaErrorNoDevice));
  } else {
    std::fprintf(stderr, "%s: cannot list CUDA devices (%s: %s)\n", program, cudaGetErrorName(error),
                 cudaGetErrorString(error));
    std::exit(exit_wrong);
  }
  std::exit(exit_no_gpu);
}

inline void check(cudaError_t error, const char* what, const char* program) {
  if (error == cudaSuccess) return;
  std::fprintf(stderr, "%s: %s failed (%s: %s)\n", program, what, cudaGetErrorName(error),
               cudaGetErrorString(error));
  std::exit(exit_wrong);
}

}  // namespace gpurun_workload
