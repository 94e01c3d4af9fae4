#pragma once

// The steps of `gpurun run`, in order: resolve the function (its manifest), plan it (pure:
// cloud/plan), prepare (the backend gets its volumes and image ready), launch (the backend).

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cloud/backend/backend.hpp"
#include "cloud/plan/config.hpp"
#include "cloud/plan/placement.hpp"
#include "cloud/plan/run_spec.hpp"
#include "cloud/state/state.hpp"
#include "manifest/manifest.hpp"
#include "util/diagnostic.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// The manifest a function comes from: the -f file, ./gpurun.yaml, or a deployed app's snapshot.
struct ResolvedFunction {
  manifest::Manifest manifest;
  std::string function;
  std::string source;  // "gpurun.yaml", or "deployed app mnist (version 3)"
  std::optional<Deployment> deployment;  // the snapshot it comes from, when deployed
};

// What a deployment froze for its runs: image name -> manifest digest.
std::map<std::string, std::string> frozen_images_of(const Deployment& deployment);
// The cloud the deployment placed `function` on (empty when its plan does not say).
std::string deployed_cloud_of(const Deployment& deployment, const std::string& function);

// Finds `target` ("FUNCTION" or "APP/FUNCTION"): in `file` when given, else ./gpurun.yaml when it
// has the function, else the newest deployment that has it (ambiguous names need APP/FUNCTION).
util::Result<ResolvedFunction> resolve_function(const std::string& target, const std::optional<std::string>& file,
                                                const Config& config, StateStore& store,
                                                std::vector<util::Diagnostic>& diagnostics);

// Prepares a planned run on `backend`: its volumes (created and recorded), then its image and
// the scheduler's GPU request. With ctx.dry_run nothing is created, pushed or recorded.
util::Result<void> prepare_run(PrepareContext& ctx, Backend& backend, const PlacedFunction& placed, RunSpec& spec);

// The candidate run time took (an index into the candidates) and why, in words:
// "A100-80GB:1: all 2 busy on gcp; A100-40GB:1: only 1 of 4 free on gcp; took T4:1 on aws".
struct RunTimeChoice {
  std::size_t index = 0;
  bool can_start = false;  // false: none can start now; it queues on the first
  std::string why;
};

// The first of `candidates` (placement_candidates, in order) whose cloud has its GPUs free now by
// `capacity_of(cloud)` (a cloud whose capacity is unknown counts as able to start); when none
// can, the first. Pure: capacity_of is asked at most once per cloud.
RunTimeChoice choose_at_run_time(const std::vector<PlacedFunction>& candidates,
                                 const std::function<Capacity(const std::string& cloud)>& capacity_of);

// Launches `spec` on `backend`. A run that a remote backend keeps is then handed, with its secret
// values, to the state dir's monitor (started on demand; config: config.path), which keeps it
// current while nobody watches; `warn` says when that failed (the run goes on regardless).
util::Result<Run> launch_run(Backend& backend, StateStore& store, const Config& config, const RunSpec& spec,
                             const SecretValues& secrets, const std::function<void(const std::string&)>& warn);

// The values of secrets `names` from the config and this process's environment (never stored).
// A GPURUN_SECRET_<NAME>_<KEY> value shorter than min_secret_bytes is an error naming the variable
// (exit 125); the config's own values were checked when it was loaded.
util::Result<SecretValues> secret_values_of(const Config& config, const std::vector<std::string>& names);

}  // namespace gpurun::cloud
