#pragma once

// The steps of `gpurun run`, in order: resolve the function (its manifest), plan it (pure:
// cloud/plan), prepare (the backend gets its volumes and image ready), launch (the backend).

#include <functional>
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
};

// Finds `target` ("FUNCTION" or "APP/FUNCTION"): in `file` when given, else ./gpurun.yaml when it
// has the function, else the newest deployment that has it (ambiguous names need APP/FUNCTION).
util::Result<ResolvedFunction> resolve_function(const std::string& target, const std::optional<std::string>& file,
                                                const Config& config, StateStore& store,
                                                std::vector<util::Diagnostic>& diagnostics);

// Prepares a planned run on `backend`: its volumes (created and recorded), then its image and
// the scheduler's GPU request. With ctx.dry_run nothing is created, pushed or recorded.
util::Result<void> prepare_run(PrepareContext& ctx, Backend& backend, const PlacedFunction& placed, RunSpec& spec);

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
