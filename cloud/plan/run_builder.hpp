#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cloud/plan/config.hpp"
#include "cloud/plan/placement.hpp"
#include "cloud/plan/run_spec.hpp"
#include "manifest/manifest.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// Command-line changes to one run of a function.
struct RunOverrides {
  std::vector<std::pair<std::string, std::string>> env;  // --env K=V, after the manifest's env
  std::vector<std::string> args;                         // words after `--`
};

// Builds the run spec of one placed function, purely (no files, state or network): command
// (+ args), working directory, env, secret names, volume mounts (host paths are the backend's,
// filled by the prepare step), GPU alternatives for the lease, timeout, retries, cpu/memory, image name.
util::Result<RunSpec> build_run_spec(const manifest::Manifest& manifest, const manifest::Function& function,
                                     const PlacedFunction& placed, const gpu::GpuRequest& request, const Config& config,
                                     const RunOverrides& overrides);

// "1x A100-40GB", "2x T4 or 1x any GPU": how a request is named in waiting messages.
std::string describe_gpu_request(const gpu::GpuRequest& request, const gpu::Catalog& catalog);

}  // namespace gpurun::cloud
