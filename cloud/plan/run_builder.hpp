#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cloud/plan/config.hpp"
#include "cloud/plan/placement.hpp"
#include "cloud/plan/run_spec.hpp"
#include "cloud/state/state.hpp"
#include "manifest/manifest.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// Command-line changes to one run of a function.
struct RunOverrides {
  std::vector<std::pair<std::string, std::string>> env;  // --env K=V, after the manifest's env
  std::vector<std::string> args;                         // words after `--`
};

// The manifest a function comes from: the -f file, ./gpurun.yaml, or a deployed app's snapshot.
struct ResolvedFunction {
  manifest::Manifest manifest;
  std::string function;
  std::string source;  // "gpurun.yaml", or "deployed app mnist (version 3)"
};

// Finds `target` ("FUNCTION" or "APP/FUNCTION"): in `file` when given, else ./gpurun.yaml when it
// has the function, else the newest deployment that has it (ambiguous names need APP/FUNCTION).
util::Result<ResolvedFunction> resolve_function(const std::string& target, const std::optional<std::string>& file,
                                                const Config& config, StateStore& store,
                                                std::vector<util::Diagnostic>& diagnostics);

// Where deploy keeps the snapshot of a deployed manifest.
std::string deployment_snapshot_path(const std::string& state_dir, const std::string& app, int version);
// Where the local backend keeps a volume's files.
std::string local_volume_path(const std::string& state_dir, const std::string& app, const std::string& volume);

// Where volume `volume` of `app` lives: under the state dir for a local cloud (or none), at
// <volume_dir>/<app>/<volume> on a Slurm cloud's shared filesystem (volume_dir defaults to
// <log_dir>/volumes). Usage error when a Slurm cloud has neither.
util::Result<std::string> volume_path(const CloudConfig* cloud, const std::string& state_dir, const std::string& app,
                                      const std::string& volume);

// Builds the run spec of one placed function: command (+ args), working directory, env, secret
// names, volume mounts (created on first use), GPU alternatives for the lease, timeout, retries.
util::Result<RunSpec> build_run_spec(const manifest::Manifest& manifest, const manifest::Function& function,
                                     const PlacedFunction& placed, const gpu::GpuRequest& request, const Config& config,
                                     StateStore& store, const RunOverrides& overrides);

// "1x A100-40GB", "2x T4 or 1x any GPU": how a request is named in waiting messages.
std::string describe_gpu_request(const gpu::GpuRequest& request, const gpu::Catalog& catalog);

}  // namespace gpurun::cloud
