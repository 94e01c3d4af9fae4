#pragma once

#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cloud/backend/registry.hpp"
#include "cloud/plan/config.hpp"
#include "cloud/images/push.hpp"
#include "cloud/plan/local_inventory.hpp"
#include "cloud/plan/placement.hpp"
#include "cloud/state/state.hpp"
#include "commands/context.hpp"
#include "manifest/manifest.hpp"
#include "util/diagnostic.hpp"
#include "util/result.hpp"

namespace gpurun::commands {

// Prints "gpurun: error: <message>" to ctx.err and returns the error's exit code.
int report(Context& ctx, const util::Error& error);

// Prints diagnostics (file:line:col) then the error; returns its exit code.
int report(Context& ctx, const util::Error& error, const std::vector<util::Diagnostic>& diagnostics);

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

// PlanInputs with the local inventory filled in; on failure reports and sets `exit_code`.
std::optional<cloud::PlanInputs> plan_inputs(Context& ctx, const cloud::Config& config, int& exit_code);

// The clouds holding each image's digest in `digests` (image name -> manifest digest), from
// the state's image locations of `app`.
util::Result<std::map<std::string, std::set<std::string>>> images_present(cloud::StateStore& store, const std::string& app,
                                                                          const std::map<std::string, std::string>& digests);

// The plan as `plan --json` prints it.
nlohmann::json plan_json(const cloud::Plan& plan);

// The plan as tables on ctx.out (functions, volumes, images) and its warnings on ctx.err.
void print_plan(Context& ctx, const cloud::Plan& plan);

// A run as `ps --json` shows it; `remote_id` is its backend's job id (null when none).
nlohmann::json run_json(const cloud::Run& run, const std::string& remote_id);

// The backends of recorded runs, made once per cloud from one config.
class RunBackends {
 public:
  explicit RunBackends(cloud::Config config) : config_(std::move(config)) {}
  // The backend of `run`'s cloud, or why it cannot be made.
  util::Result<cloud::Backend*> of(const cloud::Run& run);

 private:
  cloud::Config config_;
  std::map<std::string, std::unique_ptr<cloud::Backend>> by_cloud_;
};

// An ended run as `run --json` and `wait --json` print it: {"id", "status", "exit_code"}, and
// "error" {"kind", "message"} when gpurun lost it (not the workload's own failure).
nlohmann::json result_json(const cloud::Run& run, int code);

// "run ID failed with exit code 7", "run ID timed out after 2s (exit code 124)", "run ID lost:
// REASON (exit code 125)": an ended run in words, each said once.
std::string ended_line(const cloud::Run& run, int code);

// The backend of a recorded run (a remote one is configured from the config's cloud).
util::Result<std::unique_ptr<cloud::Backend>> run_backend(Context& ctx, const cloud::Run& run);

// A run the user named, with the state it lives in and its backend.
struct OpenedRun {
  cloud::StateStore store;
  cloud::Run run;
  std::unique_ptr<cloud::Backend> backend;
};

// Opens the state, finds the run by id or unique prefix and makes its backend; on failure
// reports and sets `exit_code`.
std::optional<OpenedRun> open_run(Context& ctx, const std::string& id, int& exit_code);

// `run` brought up to date by its backend (a remote backend is asked for the job's status); when
// that fails, the run as recorded (after a warning on ctx.err unless `quiet`).
cloud::Run refreshed_run(Context& ctx, cloud::StateStore& store, const cloud::Run& run, bool quiet = false);

// Opens the state store and marks runs whose supervisor died as lost.
util::Result<cloud::StateStore> open_store();

// Progress of image pushes drawn on ctx.err: a line per blob, a live byte count on a terminal.
cloud::PushProgress push_progress(Context& ctx);

}  // namespace gpurun::commands
