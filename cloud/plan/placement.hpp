#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cloud/plan/config.hpp"
#include "gpu/spec.hpp"
#include "manifest/manifest.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

struct PlacedFunction {
  std::string name;
  std::string cloud;
  std::string backend;
  std::optional<std::string> gpu_requested;  // as written in the manifest (or --gpu)
  std::optional<gpu::GpuSlot> gpu;            // chosen type, memory variant and count
  std::optional<std::string> image;
  std::vector<std::string> volumes;           // volume names, mount order
  std::string note;                           // where within its cloud (its backend's, for plan)
};

struct PlacedVolume {
  std::string name;
  std::string cloud;
  bool existing = false;  // already created at an earlier deploy (it stays there)
  std::string reason;     // why it lives there, in words
};

struct PlacedImage {
  std::string name;
  std::vector<std::string> clouds;     // every cloud that runs a function using it (config order)
  std::vector<std::string> upload_to;  // those that do not hold it yet
};

struct PlanWarning {
  std::string function;
  std::string message;
};

struct Plan {
  std::string app;
  std::vector<PlacedFunction> functions;
  std::vector<PlacedVolume> volumes;
  std::vector<PlacedImage> images;
  std::vector<PlanWarning> warnings;
};

// What placement needs beyond the manifest and config.
struct PlanInputs {
  std::optional<std::string> cloud_override;               // --cloud: pins every function
  std::optional<gpu::GpuRequest> gpu_override;             // --gpu (run): replaces the manifest's request
  std::optional<std::string> gpu_override_text;
  std::vector<gpu::GpuSlot> local_offers;                  // what the local cloud offers (declared or probed)
  std::string local_offers_note;                            // how local_offers were found, for messages
  // Clouds with discover_gpus: cloud name -> the offers its backend found, and how (or why none).
  std::map<std::string, std::vector<gpu::GpuSlot>> discovered_offers;
  std::map<std::string, std::string> discovered_notes;
  std::map<std::string, std::string> existing_volumes;     // volume -> cloud, from earlier deploys
  std::map<std::string, std::set<std::string>> images_present;  // image -> clouds that hold its current digest
  std::vector<std::string> only_functions;                 // empty = all
};

// Resolves where every function runs (rules in ARCHITECTURE.md / README "Placement").
// An unknown --cloud is a usage error (2); a function no cloud can run is unschedulable (3)
// with what was asked and what each cloud offers.
util::Result<Plan> make_plan(const manifest::Manifest& manifest, const Config& config, const PlanInputs& inputs);

// Every way to place GPU function `function` that run time may take, in preference order: each
// alternative of its request (or --gpu) in order, on each eligible cloud in placement order (the
// pinned cloud only; else the clouds that hold the function's existing volumes). The first is
// make_plan's static choice. A CPU-only function has none.
std::vector<PlacedFunction> placement_candidates(const manifest::Function& function, const Config& config,
                                                 const PlanInputs& inputs);

// What a cloud offers: its configured GPUs, or the probed (local) or discovered offers in PlanInputs.
std::vector<gpu::GpuSlot> cloud_offers(const CloudConfig& cloud, const PlanInputs& inputs);

// "T4:4, A10G:4" or "no GPUs".
std::string describe_offers(const std::vector<gpu::GpuSlot>& offers);

}  // namespace gpurun::cloud
