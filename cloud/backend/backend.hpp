#pragma once

// One interface over the places runs execute (this machine, a Slurm cluster, ...), picked by the
// cloud's `backend:` name through the registry (cloud/backend/registry.hpp). Every backend records
// its runs in the same StateStore. Nothing outside cloud/backend/<name>/ knows a backend's name.

#include <functional>
#include <cstdint>
#include <map>
#include <vector>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/images/image_store.hpp"
#include "cloud/images/push.hpp"
#include "cloud/plan/config.hpp"
#include "cloud/plan/placement.hpp"
#include "cloud/plan/run_spec.hpp"
#include "cloud/state/logs.hpp"
#include "cloud/state/state.hpp"
#include "manifest/manifest.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// Where a run's output can be read while it grows: its bytes, wherever they are, and their format.
struct LogSource {
  std::unique_ptr<LogBytes> bytes;
  LogFormat format = LogFormat::records;
};

// Free and total GPUs of one catalog type (memory variant included) on a cloud.
struct GpuCapacity {
  std::string type;
  int memory_gb = 0;
  int free = 0;
  int total = 0;
};

// What a backend knows about its free GPUs now; `known` false when it cannot tell.
struct Capacity {
  bool known = false;
  std::vector<GpuCapacity> gpus;
  std::string note;  // why unknown, or where the numbers come from
};

// The GPUs a backend found on its cloud when asked (a cloud without `gpus:` whose backend set
// discover_gpus): type, memory variant and the most one function can get (the most on one node).
struct DiscoveredOffers {
  std::vector<gpu::GpuSlot> offers;
  std::string note;                 // where they come from, for messages ("from the nodes' labels")
  std::vector<std::string> skipped;  // what was left out and why, for the user
};

// What the prepare step may use: the state, the config and manifest the run comes from, and how
// to tell the user about progress (image pushes) and warnings. With `dry_run` a backend creates,
// pushes and records nothing.
struct PrepareContext {
  StateStore& store;
  const Config& config;
  const manifest::Manifest& manifest;
  PushProgress progress;
  std::function<void(const std::string&)> warn;
  bool dry_run = false;
  // Image name -> manifest digest frozen by the deployment the run comes from: those images are
  // read from the local image store, never built again from the manifest's folder.
  std::map<std::string, std::string> frozen_images;
};

// Where a deployed image now is for one cloud, and what putting it there moved.
struct ImagePlacement {
  ImageLocation location;
  std::vector<std::string> tags;
  PushReport report;
};

// How a stop (cancel, timeout) of a run is going, where the backend knows it: when SIGTERM was
// sent and when SIGKILL follows (unix ms). Empty when no SIGTERM was sent (yet) or unknown.
struct StopProgress {
  std::optional<std::int64_t> term_sent_ms;
  std::optional<std::int64_t> kill_at_ms;
};

// Where a backend that resubmits a run on its own (a retry) gets the run's secret values: the
// monitor answers from what launchers handed it; nullopt when it does not know them.
using SecretLookup = std::function<std::optional<SecretValues>(const Run& run)>;

class Backend {
 public:
  virtual ~Backend() = default;
  // Makes resubmissions take secret values from `lookup` (the monitor). Unset: from the config
  // and this process's GPURUN_SECRET_* variables.
  void set_secret_lookup(SecretLookup lookup) { secret_lookup_ = std::move(lookup); }
  // The `backend:` name this backend is registered under.
  virtual std::string_view name() const = 0;
  // True when a scheduler elsewhere owns the run's status: `refresh` asks it, and the CLI prints
  // the run's final status itself (a local supervisor writes it into the log).
  virtual bool remote() const = 0;
  // Where volume `volume` of `app` lives for runs of this backend; an error says what to set.
  // Empty when the backend makes a volume only where a run first mounts it (deploy makes none).
  virtual util::Result<std::string> volume_path(const std::string& state_dir, const std::string& app,
                                                const std::string& volume) const = 0;
  // Makes volume `volume` of spec.app where this backend keeps it for a run of `spec` and returns
  // the path to record (`existing`: its record when made before). With ctx.dry_run only the path
  // (may be empty). Default: volume_path() on this machine, created with its parents.
  virtual util::Result<std::string> prepare_volume(PrepareContext& ctx, const RunSpec& spec, const std::string& volume,
                                                   const std::optional<Volume>& existing);
  // True when runs of this backend can mount `volume` where it was created. Default: this
  // backend keeps volumes of that name at the same path (same cloud, or clouds sharing a directory).
  virtual bool reaches_volume(const std::string& state_dir, const Volume& volume) const;
  // What `plan` adds to where `placed` runs within this cloud (e.g. "hosts: gpu2"), given the app's
  // volumes as recorded; empty: nothing to add. Asks nothing remote.
  virtual std::string plan_note(const PlacedFunction& /*placed*/, const std::vector<Volume>& /*volumes*/) const { return {}; }
  // What `plan` adds to where volume `name` lives on this cloud (`existing`: its record, when made
  // before; e.g. the host that holds it); empty: nothing to add.
  virtual std::string volume_note(const std::string& /*name*/, const std::optional<Volume>& /*existing*/) const { return {}; }
  // The files and directories a run of this backend leaves on this machine (its run dir, logs);
  // prune removes them once the run is forgotten.
  virtual std::vector<std::string> run_files(const StateStore& store, const Run& run) const;
  // Gets a planned `spec` ready to launch where it runs: its image (built, then unpacked here or
  // pushed to the cloud's registry) and the GPU request the backend's scheduler gets.
  virtual util::Result<void> prepare_image(PrepareContext& ctx, const PlacedFunction& placed, RunSpec& spec) = 0;
  // An error when this cloud cannot hold images (e.g. it names no registry); asked before any push.
  virtual util::Result<void> check_image_target(const Config& config, const std::string& image) const = 0;
  // deploy: puts a built image where this backend's runs get it, tagged with `version`.
  virtual util::Result<ImagePlacement> place_image(PrepareContext& ctx, BuiltImage& image, int version) = 0;
  // Records the run in `store` and starts it; secrets reach the workload only.
  virtual util::Result<Run> launch(StateStore& store, const RunSpec& spec, const SecretValues& secrets) = 0;
  // What launch would submit, secret values redacted (run --dry-run).
  virtual util::Result<std::string> dry_run(const RunSpec& spec, const SecretValues& secrets) = 0;
  // Stops the run; returns once the backend took the request. Called for a `lost` run only when
  // StateStore::leftover_workload has one: it ends that (at once) and frees its GPUs.
  virtual util::Result<void> cancel(StateStore& store, const Run& run) = 0;
  // Stops the run at once (SIGKILL, no grace period) where the backend can (`cancel --force`);
  // default: as cancel().
  virtual util::Result<void> kill(StateStore& store, const Run& run) { return cancel(store, run); }
  // Where a stop of the run stands (see StopProgress); default: unknown.
  virtual StopProgress stop_progress(const StateStore& /*store*/, const Run& /*run*/) const { return {}; }
  // Brings the recorded status up to date with the backend and returns the run as now recorded.
  // A remote backend resubmits a retry and enforces a timeout here.
  virtual util::Result<Run> refresh(StateStore& store, const Run& run) = 0;
  // refresh() for many runs of this backend's cloud, with one status request to the backend where
  // it allows; returns the runs as now recorded, in order. The default refreshes one at a time.
  virtual util::Result<std::vector<Run>> refresh_many(StateStore& store, std::span<const Run> runs);
  // Free and total GPUs by type where the backend knows them (used for run-time fallback).
  virtual util::Result<Capacity> capacity(StateStore& store);
  // What this cloud offers, asked of the backend itself (clouds with discover_gpus, at plan time).
  // Default: an error (this backend cannot tell; declare `gpus:`).
  virtual util::Result<DiscoveredOffers> discover_offers();
  // Removes what an ended run left with the backend (e.g. Kubernetes Jobs kept for `logs`) when
  // prune forgets the run. Default: nothing to remove.
  virtual util::Result<void> forget_remote(const Run& run);
  // The run's output, readable from any offset while it grows.
  virtual util::Result<LogSource> open_log(const StateStore& store, const Run& run) const = 0;
  // The backend's own id of the run's current job as its users know it (a Slurm job id); empty
  // when there is none (local runs, or not submitted yet).
  virtual std::string remote_id(const Run& run) const = 0;

 protected:
  SecretLookup secret_lookup_;
};

// Makes each of `spec`'s volumes where `backend` keeps it (Backend::prepare_volume) and records
// the volume (it stays on that cloud); fills the mounts' host paths. With ctx.dry_run only the paths.
util::Result<void> prepare_volumes(PrepareContext& ctx, Backend& backend, RunSpec& spec);

// The image a run of `ctx` uses: the digest its deployment froze (from the local image store),
// else `image` built now from the manifest. Image warnings go to ctx.warn.
util::Result<BuiltImage> image_for_run(PrepareContext& ctx, const manifest::Image& image);

// For a backend whose nodes pull images from `cloud.registry` (Slurm, Kubernetes): `spec`'s image
// built (or the deployment's frozen one), spec's image fields filled, and the image pushed there
// unless the state records that digest there already (with ctx.dry_run: nothing pushed).
// `backend` says whether the cloud can hold images (check_image_target).
util::Result<void> prepare_registry_image(PrepareContext& ctx, const Backend& backend, const CloudConfig& cloud, RunSpec& spec);
// The same for `image` (not necessarily one of the manifest's: e.g. a host function's directory
// on a cloud's default image).
util::Result<void> prepare_registry_image(PrepareContext& ctx, const Backend& backend, const CloudConfig& cloud, RunSpec& spec,
                                          const manifest::Image& image);

// deploy, for the same backends: pushes `image` to `cloud.registry`, tagged for `version`.
util::Result<ImagePlacement> place_registry_image(PrepareContext& ctx, const CloudConfig& cloud, BuiltImage& image, int version);

// The error for a function on `cloud` that mounts `volume`, which lives where it cannot reach.
util::Error unreachable_volume_error(const Volume& volume, const std::string& function, const std::string& cloud);

// The exit code `run` and `wait` report for an ended run: the workload's own code, 124 for a
// timeout, 130 when cancelled, 125 when lost.
int exit_code_of(const Run& run);

// The usage error for `image` used on `cloud`, which names no registry to push it to.
util::Error missing_registry_error(const Config& config, const CloudConfig& cloud, const std::string& image);

}  // namespace gpurun::cloud
