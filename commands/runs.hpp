#pragma once

// Recorded runs as commands find, refresh and show them.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <nlohmann/json.hpp>

#include "cloud/backend/registry.hpp"
#include "cloud/state/state.hpp"
#include "commands/context.hpp"
#include "util/result.hpp"

namespace gpurun::commands {

// A run as `ps --json` shows it; `remote_id` is its backend's job id (null when none).
nlohmann::json run_json(const cloud::Run& run, const std::string& remote_id);

// The backends of recorded runs, made once per cloud from one config.
class RunBackends {
 public:
  explicit RunBackends(cloud::Config config) : config_(std::move(config)) {}
  // The backend of `run`'s cloud, or why it cannot be made.
  util::Result<cloud::Backend*> of(const cloud::Run& run);
  // Brings the active ones of `runs` up to date in place, with one Backend::refresh_many per
  // cloud; `warn` gets what could not be refreshed (those runs stay as recorded).
  void refresh_active(cloud::StateStore& store, std::vector<cloud::Run>& runs,
                      const std::function<void(const std::string&)>& warn);

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

// The word that names the newest run (in logs, attach, wait, cancel; completion offers it first).
inline constexpr std::string_view last_run_word = "@last";

// The run the user named: `@last` (the newest run), an id or a unique prefix of one.
util::Result<cloud::Run> find_run(cloud::StateStore& store, const std::string& name);

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


}  // namespace gpurun::commands
