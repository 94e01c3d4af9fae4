#pragma once

// Loading what commands work on: the config, the manifest named on the command line, the plan's
// inputs, the state.

#include <map>
#include <optional>
#include <set>
#include <string>

#include "cloud/plan/config.hpp"
#include "cloud/plan/local_inventory.hpp"
#include "cloud/plan/placement.hpp"
#include "cloud/state/state.hpp"
#include "commands/context.hpp"
#include "manifest/manifest.hpp"
#include "util/result.hpp"

namespace CLI {
class App;
}

namespace gpurun::commands {

// Loads the config named by --config / the environment; on failure reports and sets `exit_code`.
std::optional<cloud::Config> load_config(Context& ctx, int& exit_code);

// The manifest path: the positional argument, else -f, else ./gpurun.yaml (usage error if both).
util::Result<std::string> manifest_path(const std::string& positional, const std::string& file_option);

// The manifest arguments validate, plan and deploy share: MANIFEST or -f/--file FILE.
struct ManifestArgs {
  std::string positional;
  std::string file;
};

// Adds the MANIFEST positional and -f/--file to `command`.
void add_manifest_args(CLI::App& command, ManifestArgs& args);

// A config with a manifest validated against it.
struct Loaded {
  cloud::Config config;
  manifest::Manifest manifest;
  std::string path;  // the manifest's path as given
};

// Loads the config, then the manifest named by `args`; on failure reports and sets `exit_code`.
std::optional<Loaded> load_config_and_manifest(Context& ctx, const ManifestArgs& args, int& exit_code);

// Loads and validates a manifest against the config; on failure reports and sets `exit_code`.
std::optional<manifest::Manifest> load_manifest(Context& ctx, const cloud::Config& config, const std::string& path,
                                                int& exit_code);

// PlanInputs with the local inventory and the offers of clouds with discover_gpus filled in; on
// failure reports and sets `exit_code`.
std::optional<cloud::PlanInputs> plan_inputs(Context& ctx, const cloud::Config& config, int& exit_code);

// Asks the backend of each cloud with discover_gpus for its offers. A backend that cannot answer
// (e.g. an unreachable API) leaves the cloud with no offers, the reason in discovered_notes and
// as a warning on ctx.err; what a backend left out is printed as notes.
void discover_offers(Context& ctx, const cloud::Config& config, cloud::PlanInputs& inputs);

// The clouds holding each image's digest in `digests` (image name -> manifest digest), from
// the state's image locations of `app`.
util::Result<std::map<std::string, std::set<std::string>>> images_present(cloud::StateStore& store, const std::string& app,
                                                                          const std::map<std::string, std::string>& digests);

// Opens the state store and marks runs whose supervisor died as lost.
util::Result<cloud::StateStore> open_store();


}  // namespace gpurun::commands
