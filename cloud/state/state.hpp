#pragma once

// gpurun's durable local state, shared by every gpurun process of a user (CLIs, supervisors):
// runs and their attempts, deployments, volumes and GPU leases, in SQLite (<dir>/state.db, WAL).
// Each process opens its own StateStore; one StateStore must not be used by two threads at once
// nor across fork() (open a new one in the child).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/state/leases.hpp"
#include "util/clock.hpp"
#include "util/process_group.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

namespace detail {
class Database;
}

// $GPURUN_STATE_DIR, else $XDG_STATE_HOME/gpurun, else $HOME/.local/state/gpurun.
std::string default_state_dir();
// <state dir>/runs/<id>: a run's lock, log, scratch dir and cancel request live here.
std::string run_dir(const std::string& state_dir, const std::string& run_id);
// Where deploy keeps the snapshot of a deployed manifest.
std::string deployment_snapshot_path(const std::string& state_dir, const std::string& app, int version);
// "2024-05-01T12:34:56.789Z" (UTC, millisecond precision) for JSON output.
std::string format_iso8601(std::int64_t unix_ms);

enum class RunStatus { queued, running, succeeded, failed, cancelled, timeout, lost, preempted };
// Lower-case name, as stored and shown ("queued", ...).
std::string_view to_string(RunStatus status);
// Parses a lower-case name; nullopt when unknown.
std::optional<RunStatus> parse_run_status(std::string_view text);
// Everything but queued and running is terminal (final): preempted included.
bool is_terminal(RunStatus status);

struct Run {
  // "r" + 8 base36 digits of the creation time in ms + 4 random base36 digits, e.g. "rlx3k9a2b7f4q":
  // unique, and sorting ids sorts runs by creation (until 2059).
  std::string id;
  std::string app, function, cloud, backend;
  RunStatus status = RunStatus::queued;
  std::string status_reason;
  std::optional<int> exit_code;
  std::string gpus;         // "A100-40GB:1" or the device list
  int attempt = 1;
  std::int64_t created_at = 0;  // unix ms
  std::optional<std::int64_t> started_at, ended_at;
  std::string spec_json;    // opaque, never secret values
  std::string log_dir;
  std::string remote_id;    // the backend's id of the run (Slurm job id); empty for local runs
};

// Which runs `StateStore::list_runs` returns: active ones unless `all` or a `status` is given,
// only `app`'s when set, at most `limit` (newest first).
struct RunFilter {
  bool all = false;
  std::string app;
  std::optional<RunStatus> status;
  std::optional<std::size_t> limit;
};

struct NewRun {
  std::string app, function, cloud, backend, gpus, spec_json;
  std::string log_dir;  // empty = <state dir>/runs/<id>
  std::string status_reason;
  // A process (the local supervisor) holds the run's lock while the run is active, so that
  // reconcile_lost marks it lost when none does. Remote runs are refreshed from their backend.
  bool supervised = false;
};

struct Attempt {
  std::string run_id;
  int attempt = 1;
  RunStatus status = RunStatus::running;
  std::optional<int> exit_code;
  std::int64_t started_at = 0;
  std::optional<std::int64_t> ended_at;
  std::string reason;
};

// An image digest stored in a cloud: pushed to `registry`/`repository`, or for the local
// cloud kept in the local image store (registry empty).
struct ImageLocation {
  std::string app, image, digest, cloud, registry, repository;
  std::int64_t pushed_at = 0;  // unix ms; 0 = now when recorded
};

// One version of a deployed app: an immutable snapshot of what its runs use (the manifest text
// in deployment_snapshot_path, the plan, and per cloud the image digests built at deploy).
struct Deployment {
  std::string app;
  int version = 0;  // 1, 2, ... per app; a deploy that changes nothing keeps the version
  std::string manifest_digest, manifest_path, manifest_dir, plan_json;
  std::vector<std::string> functions;  // sorted
  std::vector<ImageLocation> images;   // frozen at deploy: image, digest and where, per cloud
  std::string note;                    // e.g. "rollback to v2"; empty for a plain deploy
  std::int64_t created_at = 0;
};

struct Volume {
  std::string app, name, cloud, path;
  std::int64_t created_at = 0;
};

// The exclusive flock a run's supervisor holds on <dir>/runs/<id>/lock for the run's lifetime;
// a run whose lock is free while it is queued/running is lost. The lock file is never deleted.
class RunLock {
 public:
  // Creates the lock file and takes the lock without waiting; fails when another open file holds
  // it. `inheritable` leaves the fd open across exec (no FD_CLOEXEC) so a child can keep it.
  static util::Result<RunLock> acquire(const std::string& state_dir, const std::string& run_id, bool inheritable = false);
  // Wraps an fd that already holds the lock (e.g. inherited across exec).
  static RunLock adopt(int fd) { return RunLock(fd); }

  RunLock() = default;
  RunLock(RunLock&& other) noexcept;
  RunLock& operator=(RunLock&& other) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock();

  int fd() const { return fd_; }
  bool held() const { return fd_ >= 0; }
  // Sets or clears FD_CLOEXEC.
  void set_inheritable(bool inheritable);
  // Closes this process's fd (the lock ends when no process has it open any more).
  void release();

 private:
  explicit RunLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// True when some process holds the run's lock (probes with LOCK_EX|LOCK_NB on a fresh open).
bool run_lock_held(const std::string& state_dir, const std::string& run_id);

// A run just created, with its lock already held (so no other process can see it as lost).
struct CreatedRun {
  Run run;
  RunLock lock;
};

class StateStore {
 public:
  // Creates `dir` (mode 0700) and opens or creates <dir>/state.db, migrating its schema.
  static util::Result<StateStore> open(const std::string& dir = default_state_dir());
  StateStore(StateStore&&) noexcept;
  StateStore& operator=(StateStore&&) noexcept;
  ~StateStore();

  const std::string& dir() const { return dir_; }
  // Makes run ids and timestamps from `clock` (which must outlive the store) instead of the
  // system clock: tests move a util::ManualClock on instead of sleeping.
  void set_clock(const util::Clock& clock) { clock_ = &clock; }

  // --- Runs ---
  // Inserts a queued run (attempt 1) after taking its RunLock, which the caller keeps (or hands
  // to the supervisor) for the run's lifetime.
  util::Result<CreatedRun> create_run(const NewRun& run, bool inheritable_lock = false);
  // The run with this id, or the only one whose id starts with it. Errors (ExitCode::usage):
  // "run 'x' not found; ..." and "run id prefix 'r1' is ambiguous: ...".
  util::Result<Run> get_run(std::string_view id_or_prefix);
  // Newest first: queued/running runs only, or every run when `all`.
  util::Result<std::vector<Run>> list_runs(bool all);
  // Newest first, filtered and limited in SQL (fast on 100,000 runs).
  util::Result<std::vector<Run>> list_runs(const RunFilter& filter);
  // How many runs `filter` matches, its limit ignored.
  util::Result<std::int64_t> count_runs(const RunFilter& filter);
  // Sets status and reason (and exit code when given); started_at on the first `running`,
  // ended_at on a terminal status, which also releases the run's leases. A terminal status is
  // final: returns false (changing nothing) when the run had already ended.
  util::Result<bool> update_status(const std::string& id, RunStatus status, const std::string& reason,
                                   std::optional<int> exit_code = std::nullopt);
  util::Result<void> set_attempt(const std::string& id, int attempt);
  // Forgets ended runs (with their attempts); an active run is never deleted. Returns how many.
  util::Result<int> delete_ended_runs(const std::vector<std::string>& ids);
  // Records the backend's id of the run (e.g. the Slurm job id of its current submission).
  util::Result<void> set_remote_id(const std::string& id, const std::string& remote_id);
  // Sets remote_id to `desired` only when it is still `expected` (one process wins a race).
  util::Result<bool> replace_remote_id(const std::string& id, const std::string& expected, const std::string& desired);
  // Sets the run's gpus text (e.g. the devices granted).
  util::Result<void> set_gpus(const std::string& id, const std::string& gpus);

  // Records attempt number `attempt` as running now and sets the run's attempt to it.
  util::Result<void> add_attempt(const std::string& run_id, int attempt);
  // Ends an attempt that has not ended yet (a second call changes nothing).
  util::Result<void> finish_attempt(const std::string& run_id, int attempt, RunStatus status,
                                    std::optional<int> exit_code, const std::string& reason);
  // Attempts in order.
  util::Result<std::vector<Attempt>> list_attempts(const std::string& run_id);
  // Records the process group of an attempt's workload as soon as it exists (before it runs), so
  // that a lost run's workload can be found (leftover_workload).
  util::Result<void> set_attempt_workload(const std::string& run_id, int attempt, const util::ProcessGroup& group);
  // The workload of the run's attempt that ended `lost` (its supervisor died while it ran) while
  // some process of it still lives; nullopt when there is none.
  util::Result<std::optional<util::ProcessGroup>> leftover_workload(const std::string& run_id);

  // Marks `lost` every queued/running local-backend run whose lock is free (reason "its supervisor exited without
  // recording a result (killed?)", plus how to stop its workload when that still runs), ends its
  // open attempts and drops lease tickets of runs that are no longer queued/running, except a lost
  // run's while its workload lives (its GPUs stay busy until then). Returns the ids marked lost.
  // Cheap when nothing changed: call it before showing runs (ps, logs, wait); get_run and list_runs do not.
  util::Result<std::vector<std::string>> reconcile_lost();

  // --- Deployments and volumes ---
  // Records a deploy of `app` as its next version (1, 2, ...) with its function names.
  util::Result<int> record_deployment(const Deployment& deployment);
  // The newest version of each app (by app name), or every version (app, then newest first).
  util::Result<std::vector<Deployment>> list_deployments(bool all_versions);
  // The newest version of `app`, or nullopt when it was never deployed.
  util::Result<std::optional<Deployment>> latest_deployment(const std::string& app);
  // Version `version` of `app`, or nullopt.
  util::Result<std::optional<Deployment>> get_deployment(const std::string& app, int version);
  // Every version of `app`, oldest first.
  util::Result<std::vector<Deployment>> app_history(const std::string& app);
  // Forgets every version of `app` (its image locations stay, for prune). Returns how many.
  util::Result<int> delete_app(const std::string& app);
  // The newest deployments (one per app, by app name) that have `function`.
  util::Result<std::vector<Deployment>> find_function(const std::string& function);

  // The volume, or nullopt.
  util::Result<std::optional<Volume>> get_volume(const std::string& app, const std::string& name);
  // Creates the volume when absent; an existing one is returned unchanged (volumes stay put).
  util::Result<Volume> ensure_volume(const std::string& app, const std::string& name, const std::string& cloud,
                                     const std::string& path);
  // Forgets the volume's record (its files are the caller's).
  util::Result<void> forget_volume(const std::string& app, const std::string& name);
  // Volumes of `app` (every app when empty), by app and name.
  util::Result<std::vector<Volume>> list_volumes(const std::string& app = {});

  // --- Images ---
  // Records (or refreshes) where image digests are, all in one transaction.
  util::Result<void> record_image_locations(const std::vector<ImageLocation>& locations);
  // Forgets one recorded image location.
  util::Result<void> forget_image_location(const ImageLocation& location);
  // Image locations of `app` (every app when empty), by app, image, newest first.
  util::Result<std::vector<ImageLocation>> list_image_locations(const std::string& app = {});

  // --- GPU leases (first come, first served per cloud) ---
  // Queues a request for one of `alternatives` (in preference order) on `cloud`. The run must
  // exist and its lock be held, else reconcile_lost drops the ticket.
  util::Result<LeaseTicket> enqueue_lease(const std::string& run_id, const std::string& cloud,
                                          const std::vector<LeaseAlternative>& alternatives);
  // In one write transaction: grants the first alternative that has enough free matching devices
  // (smallest sufficient memory first) and none of whose devices an earlier waiting ticket of the
  // same cloud could use (FIFO without starvation). Asking again after a grant returns the same
  // devices; Impossible when no alternative fits the inventory even when idle. Devices in
  // `external` (used by processes outside gpurun) are not granted.
  util::Result<LeaseOutcome> try_grant(LeaseTicket ticket, const std::vector<LeaseDevice>& inventory,
                                       const ExternalUse& external = {});
  // Polls try_grant (and reconcile_lost about twice a second) until granted or impossible;
  // `on_waiting` gets each new waiting reason. Error ExitCode::cancelled when *cancelled turns
  // true; the ticket stays queued until released. `external_use` (when set) is asked at most
  // once per `external_every` for the devices processes outside gpurun use.
  util::Result<LeaseOutcome> wait_for_grant(LeaseTicket ticket, const std::vector<LeaseDevice>& inventory,
                                            std::chrono::milliseconds poll = std::chrono::milliseconds(50),
                                            const std::function<void(const std::string&)>& on_waiting = {},
                                            const std::atomic<bool>* cancelled = nullptr,
                                            const std::function<ExternalUse()>& external_use = {},
                                            std::chrono::milliseconds external_every = std::chrono::seconds(1));
  // Drops the ticket and its devices; releasing twice is fine.
  util::Result<void> release_lease(LeaseTicket ticket);
  // The devices currently granted on `cloud` (by index) with the run holding each.
  util::Result<std::vector<std::pair<LeaseDevice, std::string>>> leased_devices(const std::string& cloud);

 private:
  StateStore(std::string dir, std::unique_ptr<detail::Database> db);
  // reconcile_lost's steps: mark runs lost, then drop the lease tickets no live run holds.
  std::vector<std::string> mark_lost(const std::vector<std::string>& ids);
  void drop_stale_tickets();

  std::string dir_;
  std::unique_ptr<detail::Database> db_;
  const util::Clock* clock_ = &util::system_clock();
};

}  // namespace gpurun::cloud
