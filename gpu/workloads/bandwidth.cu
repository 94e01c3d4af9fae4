// gpurun-bandwidth: measures device memory bandwidth (cudaMemcpy device-to-device and a copy
// kernel) and compares it with the peak computed from the memory clock and bus width.
// Exit codes: see common.cuh.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common.cuh"

namespace {

constexpr const char* program = "gpurun-bandwidth";

__global__ void copy_kernel(const float4* __restrict__ in, float4* __restrict__ out, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(blockDim.x) * gridDim.x) {
    out[i] = in[i];
  }
}

__global__ void fill_kernel(float* data, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(blockDim.x) * gridDim.x) {
    data[i] = static_cast<float>(i % 1000003);
  }
}

// Peak bandwidth in GB/s from the memory clock (kHz) and bus width (bits), double data rate;
// 0 when the driver reports neither.
double peak_gb_per_s(int device) {
  int clock_khz = 0;
  int bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
}

// Average seconds of `iterations` runs of `work`, after one warm-up run.
template <class Work>
double time_it(int iterations, Work work) {
  using gpurun_workload::check;
  cudaEvent_t start;
  cudaEvent_t stop;
  check(cudaEventCreate(&start), "cudaEventCreate", program);
  check(cudaEventCreate(&stop), "cudaEventCreate", program);
  work();
  check(cudaEventRecord(start), "cudaEventRecord", program);
  for (int i = 0; i < iterations; ++i) work();
  check(cudaEventRecord(stop), "cudaEventRecord", program);
  check(cudaEventSynchronize(stop), "cudaEventSynchronize", program);
  check(cudaGetLastError(), "kernel", program);
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime", program);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / 1e3 / iterations;
}

}  // namespace

int main(int argc, char** argv) {
  using gpurun_workload::check;
  int device = 0;
  long size_mib = 512;
  int iterations = 20;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      device = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--size-mib") == 0 && i + 1 < argc) {
      size_mib = std::atol(argv[++i]);
    } else if (std::strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
      iterations = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::printf("usage: %s [--device N] [--size-mib MiB (512)] [--iterations N (20)]\n"
                  "Measures device memory bandwidth against the device's peak.\n"
                  "Exit codes: 0 ok, 1 wrong result or CUDA failure, 2 usage, 3 no usable GPU.\n",
                  program);
      return 0;
    } else {
      std::fprintf(stderr, "%s: unknown argument '%s'; see --help\n", program, argv[i]);
      return gpurun_workload::exit_usage;
    }
  }
  if (size_mib < 1 || iterations < 1) {
    std::fprintf(stderr, "%s: --size-mib and --iterations must be positive\n", program);
    return gpurun_workload::exit_usage;
  }
  const int count = gpurun_workload::device_count_or_exit(program);
  if (device < 0 || device >= count) {
    std::fprintf(stderr, "%s: no device %d (%d visible)\n", program, device, count);
    return gpurun_workload::exit_usage;
  }
  check(cudaSetDevice(device), "cudaSetDevice", program);
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties", program);
  std::size_t free_bytes = 0;
  std::size_t total_bytes = 0;
  check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo", program);
  // Two buffers; keep them within a third of free memory each.
  std::size_t bytes = std::min(static_cast<std::size_t>(size_mib) << 20, free_bytes / 3);
  bytes -= bytes % (16u << 10);
  const std::size_t floats = bytes / sizeof(float);
  float* a = nullptr;
  float* b = nullptr;
  check(cudaMalloc(&a, bytes), "cudaMalloc", program);
  check(cudaMalloc(&b, bytes), "cudaMalloc", program);
  fill_kernel<<<prop.multiProcessorCount * 8, 256>>>(a, floats);
  check(cudaMemset(b, 0, bytes), "cudaMemset", program);
  check(cudaDeviceSynchronize(), "fill kernel", program);

  const double memcpy_s =
      time_it(iterations, [&] { check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpyAsync", program); });
  const int blocks = prop.multiProcessorCount * 8;
  const double kernel_s = time_it(iterations, [&] {
    copy_kernel<<<blocks, 256>>>(reinterpret_cast<const float4*>(b), reinterpret_cast<float4*>(a),
                                 bytes / sizeof(float4));
  });

  // Both copies move a's contents around unchanged: check a sample of a.
  std::vector<float> host(floats);
  check(cudaMemcpy(host.data(), a, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy", program);
  check(cudaFree(a), "cudaFree", program);
  check(cudaFree(b), "cudaFree", program);
  for (std::size_t i = 0; i < floats; i += 4093) {
    if (host[i] != static_cast<float>(i % 1000003)) {
      std::fprintf(stderr, "%s: GPU %d (%s): copy result mismatch at element %zu (%g, expected %g)\n", program,
                   device, prop.name, i, static_cast<double>(host[i]), static_cast<double>(i % 1000003));
      return gpurun_workload::exit_wrong;
    }
  }

  // Each copy reads and writes `bytes`.
  const double memcpy_gbs = 2.0 * static_cast<double>(bytes) / memcpy_s / 1e9;
  const double kernel_gbs = 2.0 * static_cast<double>(bytes) / kernel_s / 1e9;
  const double peak = peak_gb_per_s(device);
  std::printf("GPU %d: %s, %zu MiB buffers, %d iterations\n", device, prop.name, bytes >> 20, iterations);
  std::printf("memcpy device-to-device: %.1f GB/s\n", memcpy_gbs);
  std::printf("copy kernel:             %.1f GB/s\n", kernel_gbs);
  if (peak > 0) {
    std::printf("peak (memory clock x bus width): %.1f GB/s; best achieved %.0f%% of peak\n", peak,
                100.0 * std::max(memcpy_gbs, kernel_gbs) / peak);
  } else {
    std::printf("peak: unknown (the driver reports no memory clock or bus width)\n");
  }
  return 0;
}
