// gpurun-probe: lists the visible CUDA devices (name, memory, compute capability), runs a small
// kernel on each and checks its result on the host. Exit codes: see common.cuh.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common.cuh"

namespace {

constexpr const char* program = "gpurun-probe";
constexpr std::uint32_t seed = 0x9e3779b9u;

__host__ __device__ std::uint32_t mix(std::uint32_t i) {
  std::uint32_t x = i * 2654435761u ^ seed;
  x ^= x >> 15;
  x *= 0x2c1b3c6du;
  x ^= x >> 12;
  return x;
}

// out[i] = mix(i); *sum accumulates every out[i] (mod 2^32) through shared memory and atomics.
__global__ void probe_kernel(std::uint32_t* out, std::uint32_t* sum, std::uint32_t n) {
  __shared__ std::uint32_t block_sum;
  if (threadIdx.x == 0) block_sum = 0;
  __syncthreads();
  for (std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    out[i] = mix(i);
    atomicAdd(&block_sum, out[i]);
  }
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(sum, block_sum);
}

// Runs the kernel on `device`; returns an empty string when the result is right, else what is wrong.
std::string run_check(int device, std::uint32_t n) {
  using gpurun_workload::check;
  check(cudaSetDevice(device), "cudaSetDevice", program);
  std::uint32_t* out = nullptr;
  std::uint32_t* sum = nullptr;
  check(cudaMalloc(&out, n * sizeof(std::uint32_t)), "cudaMalloc", program);
  check(cudaMalloc(&sum, sizeof(std::uint32_t)), "cudaMalloc", program);
  check(cudaMemset(sum, 0, sizeof(std::uint32_t)), "cudaMemset", program);
  probe_kernel<<<64, 256>>>(out, sum, n);
  check(cudaGetLastError(), "kernel launch", program);
  check(cudaDeviceSynchronize(), "kernel", program);
  std::vector<std::uint32_t> host(n);
  std::uint32_t device_sum = 0;
  check(cudaMemcpy(host.data(), out, n * sizeof(std::uint32_t), cudaMemcpyDeviceToHost), "cudaMemcpy", program);
  check(cudaMemcpy(&device_sum, sum, sizeof(std::uint32_t), cudaMemcpyDeviceToHost), "cudaMemcpy", program);
  check(cudaFree(out), "cudaFree", program);
  check(cudaFree(sum), "cudaFree", program);
  std::uint32_t expected_sum = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (host[i] != mix(i)) {
      char text[128];
      std::snprintf(text, sizeof text, "element %u is %08x, expected %08x", i, host[i], mix(i));
      return text;
    }
    expected_sum += host[i];
  }
  if (device_sum != expected_sum) {
    char text[128];
    std::snprintf(text, sizeof text, "sum is %08x, expected %08x", device_sum, expected_sum);
    return text;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  int only = -1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      only = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::printf("usage: %s [--device N]\n"
                  "Prints each visible CUDA device and checks a kernel's result on it.\n"
                  "Exit codes: 0 ok, 1 wrong result or CUDA failure, 2 usage, 3 no usable GPU.\n",
                  program);
      return 0;
    } else {
      std::fprintf(stderr, "%s: unknown argument '%s'; see --help\n", program, argv[i]);
      return gpurun_workload::exit_usage;
    }
  }
  const int count = gpurun_workload::device_count_or_exit(program);
  if (only >= count || only < -1) {
    std::fprintf(stderr, "%s: no device %d (%d visible)\n", program, only, count);
    return gpurun_workload::exit_usage;
  }
  int driver = 0;
  int runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::printf("CUDA driver %d.%d, runtime %d.%d, %d device(s)\n", driver / 1000, driver % 1000 / 10, runtime / 1000,
              runtime % 1000 / 10, count);
  int failures = 0;
  for (int device = 0; device < count; ++device) {
    if (only >= 0 && device != only) continue;
    cudaDeviceProp prop{};
    gpurun_workload::check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties", program);
    char bus_id[32] = {};
    cudaDeviceGetPCIBusId(bus_id, sizeof bus_id, device);
    std::printf("GPU %d: %s, %.1f GiB, compute capability %d.%d, %d SMs, bus %s\n", device, prop.name,
                static_cast<double>(prop.totalGlobalMem) / (1u << 30), prop.major, prop.minor,
                prop.multiProcessorCount, bus_id);
    const std::uint32_t n = 1u << 20;
    const std::string problem = run_check(device, n);
    if (problem.empty()) {
      std::printf("GPU %d: kernel check ok (%u elements)\n", device, n);
    } else {
      std::fprintf(stderr, "%s: GPU %d (%s): kernel result mismatch: %s\n", program, device, prop.name,
                   problem.c_str());
      ++failures;
    }
  }
  return failures == 0 ? 0 : gpurun_workload::exit_wrong;
}
