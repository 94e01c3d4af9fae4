#include "cloud/backend/local/local_backend.hpp"

#include <algorithm>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "cloud/images/image_store.hpp"
#include "cloud/images/stored_image.hpp"
#include "cloud/plan/config.hpp"
#include "cloud/plan/local_inventory.hpp"
#include "cloud/state/logs.hpp"
#include "cloud/exec/process.hpp"
#include "cloud/exec/sandbox.hpp"
#include "gpu/discovery.hpp"
#include "util/process_group.hpp"
#include "util/strings.hpp"
#include "util/units.hpp"

extern char** environ;  // NOLINT

namespace gpurun::cloud {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int /*sig*/) { g_stop.store(true); }

std::string cancel_path(const std::string& state_dir, const std::string& run_id) {
  return run_dir(state_dir, run_id) + "/cancel";
}

// <run dir>/term: "TERM_MS KILL_MS", written when the supervisor sends SIGTERM.
std::string term_path(const std::string& state_dir, const std::string& run_id) {
  return run_dir(state_dir, run_id) + "/term";
}

// The text of a small file ("" when it is missing).
std::string read_small_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buffer[128];
  const ssize_t got = ::read(fd, buffer, sizeof buffer);
  ::close(fd);
  return got > 0 ? std::string(buffer, static_cast<std::size_t>(got)) : std::string();
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string describe_alternatives(const RunSpec& spec) {
  return spec.gpu_text.empty() ? std::string("GPUs") : spec.gpu_text;
}

// Runs inside bubblewrap over a view of the host with each volume bound at its path.
std::vector<std::string> sandboxed(const std::vector<std::string>& argv, const RunSpec& spec) {
  std::vector<std::pair<std::string, std::string>> binds;
  for (const auto& m : spec.mounts) binds.emplace_back(m.host_path, m.path);
  return host_sandbox_argv(binds, spec.cwd, argv);
}

// Runs inside bubblewrap with the image's unpacked root filesystem as `/`, the run's scratch
// directory and volumes bound at their paths; with GPUs leased, the devices and driver libraries.
std::vector<std::string> sandboxed_image(const std::vector<std::string>& argv, const RunSpec& spec,
                                         const std::string& scratch, bool gpus) {
  ImageSandbox sandbox;
  sandbox.rootfs = spec.image_rootfs;
  sandbox.workdir = spec.image_workdir;
  sandbox.gpus = gpus;
  sandbox.binds.emplace_back(scratch, scratch);
  for (const auto& m : spec.mounts) sandbox.binds.emplace_back(m.host_path, m.path);
  return image_sandbox_argv(sandbox, argv);
}

// Keeps the last 4 KiB of what a child wrote in `tail`.
void keep_tail(std::string& tail, const char* data, std::size_t size) {
  tail.append(data, size);
  if (tail.size() > 4096) tail.erase(0, tail.size() - 4096);
}

struct AttemptResult {
  RunStatus status = RunStatus::failed;
  int exit_code = 1;
  std::string reason;
  bool final = false;  // retrying cannot help (e.g. the request can never be served here)
};

// A scheduled retry's waiting reason, as every backend says it:
// "waiting for 1x T4 on local: retry 1 of 2 in 4s (after exit code 7)".
std::string retry_reason(const RunSpec& spec, int retry, std::chrono::milliseconds delay, const AttemptResult& ended) {
  std::string after = ended.reason;
  if (ended.status == RunStatus::timeout && spec.timeout) after = "timing out after " + util::format_duration(*spec.timeout);
  if (after.rfind("failed with ", 0) == 0) after.erase(0, 12);
  return fmt::format("waiting for {} on {}: retry {} of {} in {} (after {})",
                     spec.gpu_text.empty() ? std::string("the next attempt") : spec.gpu_text, spec.cloud, retry,
                     spec.max_retries, util::format_duration(delay), after);
}

// A file of a few hundred KiB kept beside a run's log while the run is supervised and deleted
// before its result is recorded, so that the result and its last log line fit on a full disk.
class SpaceReserve {
 public:
  static constexpr off_t size = off_t{256} * 1024;
  // Creates the file at `path` (best effort: without room there is no reserve).
  explicit SpaceReserve(std::string path) : path_(std::move(path)) {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    if (::posix_fallocate(fd, 0, size) != 0) ::unlink(path_.c_str());
    ::close(fd);
  }
  SpaceReserve(const SpaceReserve&) = delete;
  SpaceReserve& operator=(const SpaceReserve&) = delete;
  ~SpaceReserve() { release(); }
  // Deletes the file, giving its space back.
  void release() {
    if (!path_.empty()) ::unlink(path_.c_str());
    path_.clear();
  }

 private:
  std::string path_;
};

// Asks the driver (NVML, else nvidia-smi) which of `inventory`'s devices processes outside gpurun
// use, by uuid; unset when no device has a driver uuid (declared devices, "GPU-declared-N").
std::function<ExternalUse()> external_use_probe(const std::vector<LeaseDevice>& inventory) {
  std::set<std::string> uuids;
  for (const auto& d : inventory) {
    if (!d.uuid.empty() && !d.uuid.starts_with("GPU-declared-")) uuids.insert(d.uuid);
  }
  if (uuids.empty()) return {};
  return [uuids] {
    ExternalUse external;
    for (auto& device : gpu::find_compute_processes(gpu::discovery_options_from_env())) {
      if (uuids.count(device.uuid) > 0) external[device.uuid] = std::move(device.pids);
    }
    return external;
  };
}

// Runs a run's attempts in the detached supervisor process. A failed state or log write (a full
// disk) ends the run: the workload is stopped as for a cancel and the run fails with the write's
// error (exit 125), recorded after the SpaceReserve is given back. When even that cannot be
// recorded the run is marked lost once the supervisor exits (StateStore::reconcile_lost).
class Supervisor {
 public:
  Supervisor(StateStore& store, Run run, RunSpec spec, SecretValues secrets, std::vector<LeaseDevice> devices, LogWriter& log)
      : store_(store),
        run_(std::move(run)),
        spec_(std::move(spec)),
        secrets_(std::move(secrets)),
        devices_(std::move(devices)),
        log_(log) {}

  // Runs every attempt; returns the final status and exit code.
  AttemptResult run() {
    const int attempts = spec_.max_retries + 1;
    AttemptResult result;
    for (int attempt = 1; attempt <= attempts; ++attempt) {
      if (attempt > 1) {
        note(log_.set_attempt(attempt));
        note(store_.set_attempt(run_.id, attempt));
      }
      result = run_attempt(attempt);
      if (result.status == RunStatus::succeeded || result.status == RunStatus::cancelled || result.final) return result;
      if (attempt == attempts) break;
      const auto delay = retry_delay(spec_, attempt);
      note(log_.marker(fmt::format("attempt {} {}; retrying in {} (attempt {} of {})", attempt, result.reason,
                                   util::format_duration(delay), attempt + 1, attempts)));
      note(log_.flush());
      note(store_.update_status(run_.id, RunStatus::queued, retry_reason(spec_, attempt, delay, result)));
      if (broken_) return broken();
      if (sleep_unless_cancelled(delay)) return {RunStatus::cancelled, util::to_int(util::ExitCode::cancelled), "cancelled"};
    }
    return result;
  }

 private:
  // Keeps the first failed state or log write: the run ends with it as soon as it can.
  template <typename T>
  void note(const util::Result<T>& written) {
    if (!written && !broken_) broken_ = written.error().message;
  }

  // The end of a run whose state or log could not be written.
  AttemptResult broken() const { return {RunStatus::failed, util::to_int(util::ExitCode::backend), *broken_, true}; }

  bool cancel_requested() const {
    return g_stop.load() || file_exists(cancel_path(store_.dir(), run_.id));
  }

  // `cancel --force`: the cancel request says "force".
  bool kill_requested() const { return read_small_file(cancel_path(store_.dir(), run_.id)) == "force"; }

  // Tells `cancel` and `run` when SIGKILL follows the SIGTERM just sent (best effort).
  void record_term() const {
    const auto now = util::now_unix_ms();
    const std::string text = fmt::format("{} {}", now, now + spec_.kill_grace.count());
    const int fd = ::open(term_path(store_.dir(), run_.id).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    [[maybe_unused]] const auto written = ::write(fd, text.data(), text.size());
    ::close(fd);
  }

  bool sleep_unless_cancelled(std::chrono::milliseconds delay) const {
    const auto until = Clock::now() + delay;
    while (Clock::now() < until) {
      if (cancel_requested()) return true;
      std::this_thread::sleep_for(std::min<Clock::duration>(50ms, until - Clock::now()));
    }
    return cancel_requested();
  }

  std::vector<std::string> environment(int attempt, const std::vector<LeaseDevice>& devices) const {
    std::vector<std::pair<std::string, std::string>> vars;
    const bool image = !spec_.image_rootfs.empty();
    if (image) {
      // An image run sees the image's environment, not the host's.
      vars = spec_.image_env;
      if (std::none_of(vars.begin(), vars.end(), [](const auto& kv) { return kv.first == "PATH"; })) {
        vars.emplace_back("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
      }
    }
    for (char** e = image ? nullptr : environ; e != nullptr && *e != nullptr; ++e) {
      std::string entry = *e;
      const auto eq = entry.find('=');
      if (eq == std::string::npos) continue;
      const std::string key = entry.substr(0, eq);
      if (key.rfind("GPURUN_", 0) == 0) continue;  // gpurun's own settings and secret sources stay out
      vars.emplace_back(key, entry.substr(eq + 1));
    }
    auto set = [&](const std::string& key, const std::string& value) {
      for (auto& [k, v] : vars) {
        if (k == key) {
          v = value;
          return;
        }
      }
      vars.emplace_back(key, value);
    };
    for (const auto& [k, v] : spec_.env) set(k, v);
    for (const auto& [name, values] : secrets_) {
      for (const auto& [k, v] : values) set(k, v);
    }
    set("GPURUN_RUN_ID", run_.id);
    set("GPURUN_APP", spec_.app);
    set("GPURUN_FUNCTION", spec_.function);
    set("GPURUN_ATTEMPT", std::to_string(attempt));
    set("GPURUN_RUN_DIR", run_dir(store_.dir(), run_.id) + "/scratch");
    std::string visible;
    for (const auto& d : devices) {
      if (!visible.empty()) visible += ',';
      visible += std::to_string(d.index);
    }
    set("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
    set("CUDA_VISIBLE_DEVICES", visible);
    return environ_entries(std::move(vars), image && !devices.empty());
  }

  // Waits for the run's GPUs; nullopt when granted (devices filled), else the attempt's end.
  std::optional<AttemptResult> lease(LeaseTicket& ticket, std::vector<LeaseDevice>& devices) {
    auto enqueued = store_.enqueue_lease(run_.id, spec_.cloud, spec_.gpu_alternatives);
    if (!enqueued) return AttemptResult{RunStatus::failed, util::to_int(enqueued.error().code), enqueued.error().message};
    ticket = *enqueued;
    const auto& inv = devices_;
    std::string last_reason;
    std::atomic<bool> cancelled{false};
    std::thread watcher;
    std::atomic<bool> done{false};
    watcher = std::thread([&] {
      while (!done.load()) {
        if (cancel_requested()) cancelled.store(true);
        std::this_thread::sleep_for(50ms);
      }
    });
    auto outcome = store_.wait_for_grant(
        ticket, inv, 50ms,
        [&](const std::string& reason) {
          if (reason == last_reason) return;
          last_reason = reason;
          note(store_.update_status(run_.id, RunStatus::queued,
                                    fmt::format("waiting for {} on {}: {}", describe_alternatives(spec_), spec_.cloud, reason)));
        },
        &cancelled, external_use_probe(inv));
    done.store(true);
    watcher.join();
    if (!outcome) {
      if (outcome.error().code == util::ExitCode::cancelled) {
        return AttemptResult{RunStatus::cancelled, util::to_int(util::ExitCode::cancelled), "cancelled while waiting for GPUs"};
      }
      return AttemptResult{RunStatus::failed, util::to_int(outcome.error().code), outcome.error().message};
    }
    if (const auto* impossible = std::get_if<LeaseImpossible>(&*outcome)) {
      return AttemptResult{RunStatus::failed, util::to_int(util::ExitCode::unschedulable),
                           fmt::format("unschedulable: {} on {}: {}", describe_alternatives(spec_), spec_.cloud, impossible->reason),
                           true};
    }
    if (const auto* granted = std::get_if<LeaseGranted>(&*outcome)) {
      devices = granted->devices;
      return std::nullopt;
    }
    return AttemptResult{RunStatus::failed, util::to_int(util::ExitCode::backend), "lease ended unexpectedly"};
  }

  AttemptResult run_attempt(int attempt) {
    LeaseTicket ticket = 0;
    std::vector<LeaseDevice> devices;
    if (!spec_.gpu_alternatives.empty()) {
      if (auto ended = lease(ticket, devices)) {
        if (ticket != 0) (void)store_.release_lease(ticket);
        return *ended;
      }
      std::string gpus;
      for (const auto& d : devices) {
        gpus += fmt::format("{}{}-{}GB#{}", gpus.empty() ? "" : ",", d.type, d.memory_gb, d.index);
      }
      note(store_.set_gpus(run_.id, gpus));
    }
    auto result = execute(attempt, devices);
    if (ticket != 0) (void)store_.release_lease(ticket);
    return result;
  }

  // The attempt's command line, environment and directory: in bubblewrap for an image or volumes.
  ProcessSpec process_spec(int attempt, const std::vector<LeaseDevice>& devices) const {
    ProcessSpec process;
    process.env = environment(attempt, devices);
    if (!spec_.image_rootfs.empty()) {
      const std::string scratch = run_dir(store_.dir(), run_.id) + "/scratch";
      process.argv = sandboxed_image(spec_.argv, spec_, scratch, !devices.empty());
      process.cwd = scratch;
    } else {
      process.argv = spec_.mounts.empty() ? spec_.argv : sandboxed(spec_.argv, spec_);
      process.cwd = spec_.cwd;
    }
    return process;
  }

  // What following a child saw.
  struct Watch {
    Clock::time_point started = Clock::now();
    std::optional<Clock::time_point> term_sent;
    std::optional<Clock::time_point> exited_at;
    std::optional<int> exit_code;
    bool timed_out = false;
    bool cancelled = false;
    bool killed = false;  // SIGKILL sent
    bool broken = false;  // a state or log write failed
    std::string stderr_tail;  // bubblewrap's message when it fails before the command runs
  };

  // Copies what the child wrote on stdout/stderr (waiting up to 50 ms) into the log and closes a
  // pipe at its end; keeps stderr's tail in `stderr_tail` when given. True when it read anything.
  bool pump_output(ChildProcess& child, std::vector<char>& buffer, std::string* stderr_tail) {
    return child.pump_output(buffer, 50, [&](bool from_stderr, const char* data, std::size_t size) {
      note(log_.write(from_stderr ? LogStream::err : LogStream::out, data, size));
      if (stderr_tail != nullptr && from_stderr) keep_tail(*stderr_tail, data, size);
    });
  }

  // SIGTERM to the child's group on a cancel request, a failed state or log write or at the
  // timeout; SIGKILL once the grace period after SIGTERM has passed.
  void enforce_limits(ChildProcess& child, Watch& seen) {
    if (seen.exit_code || seen.killed) return;
    if (!seen.term_sent) {
      if (broken_) {
        seen.broken = true;
      } else if (cancel_requested()) {
        seen.cancelled = true;
        if (kill_requested()) return kill(child, seen, "cancel --force: sending SIGKILL");
        note(log_.marker("cancel requested: sending SIGTERM"));
      } else if (spec_.timeout && Clock::now() - seen.started >= *spec_.timeout) {
        seen.timed_out = true;
        note(log_.marker(fmt::format("timed out after {}: sending SIGTERM", util::format_duration(*spec_.timeout))));
      }
      if (seen.broken || seen.cancelled || seen.timed_out) {
        child.signal_group(SIGTERM);
        seen.term_sent = Clock::now();
        record_term();
      }
    } else if (Clock::now() - *seen.term_sent >= spec_.kill_grace) {
      kill(child, seen, fmt::format("still running {} after SIGTERM: sending SIGKILL", util::format_duration(spec_.kill_grace)));
    } else if (cancel_requested() && kill_requested()) {
      seen.cancelled = true;
      kill(child, seen, "cancel --force: sending SIGKILL");
    }
  }

  // SIGKILL to the child's group now, after a marker that says why.
  void kill(ChildProcess& child, Watch& seen, const std::string& why) {
    note(log_.marker(why));
    child.signal_group(SIGKILL);
    seen.killed = true;
  }

  // Follows the child until it exited and its pipes are drained, logging its output and
  // enforcing the timeout and cancel requests; a `sandboxed` child's stderr tail is kept.
  Watch follow_child(ChildProcess& child, bool sandboxed) {
    Watch seen;
    std::vector<char> buffer(1 << 16);
    while (child.stdout_fd() >= 0 || child.stderr_fd() >= 0 || !seen.exit_code) {
      const bool read_any = pump_output(child, buffer, sandboxed ? &seen.stderr_tail : nullptr);
      if (!read_any) note(log_.flush());
      if (!seen.exit_code) {
        seen.exit_code = child.try_wait();
        if (seen.exit_code) seen.exited_at = Clock::now();
      }
      // The entrypoint is gone: give the pipes a moment to drain, then end whatever it left behind.
      if (seen.exit_code && seen.exited_at && Clock::now() - *seen.exited_at > 200ms && !read_any) {
        child.signal_group(SIGKILL);
        child.close_stdout();
        child.close_stderr();
        break;
      }
      enforce_limits(child, seen);
    }
    return seen;
  }

  // The attempt's status, exit code and reason from what watching the child saw; a sandbox
  // that never ran the command is gpurun's failure, not the workload's.
  AttemptResult outcome(const Watch& seen, std::optional<SandboxStatus>& sandbox) const {
    if (broken_) return broken();
    if (seen.cancelled) return {RunStatus::cancelled, util::to_int(util::ExitCode::cancelled), "cancelled"};
    if (seen.timed_out) {
      return {RunStatus::timeout, util::to_int(util::ExitCode::timeout),
              fmt::format("timed out after {}", util::format_duration(*spec_.timeout))};
    }
    const int code = *seen.exit_code;
    if (code == 0) return {RunStatus::succeeded, 0, ""};
    if (sandbox && code < 128 && !sandbox->workload_ran()) {
      const auto failure = sandbox_failure(seen.stderr_tail);
      return {RunStatus::failed, failure.exit_code, failure.reason, true};
    }
    return {RunStatus::failed, code,
            code > 128 ? fmt::format("killed by signal {}", code - 128) : fmt::format("failed with exit code {}", code)};
  }

  // Runs one attempt's process to its end and records the attempt; its workload's process group
  // is recorded before the workload runs (a lost run's GPUs stay leased while it lives).
  AttemptResult execute(int attempt, const std::vector<LeaseDevice>& devices) {
    ::unlink(term_path(store_.dir(), run_.id).c_str());  // an earlier attempt's SIGTERM is not this one's
    note(store_.add_attempt(run_.id, attempt));
    note(store_.update_status(run_.id, RunStatus::running, ""));
    if (attempt > 1) note(log_.marker(fmt::format("attempt {} started", attempt)));
    if (broken_) return broken();
    ProcessSpec process = process_spec(attempt, devices);
    process.on_forked = [&](pid_t pid) -> util::Result<void> {
      const auto start = util::process_start_ticks(pid);
      if (!start) return util::make_error(util::ExitCode::backend, fmt::format("the workload (pid {}) vanished at its start", pid));
      return store_.set_attempt_workload(run_.id, attempt, util::ProcessGroup{pid, *start});
    };
    std::optional<SandboxStatus> sandbox;
    if (!spec_.image_rootfs.empty() || !spec_.mounts.empty()) {
      if (auto attached = SandboxStatus::attach(process.argv)) sandbox.emplace(std::move(*attached));
    }
    auto child = ChildProcess::spawn(process);
    if (sandbox) sandbox->started();
    if (!child) {
      // Not there (127), not executable (126), no working directory or a state write that failed
      // in on_forked (125, gpurun's): no retry mends it.
      AttemptResult failed{RunStatus::failed, util::to_int(child.error().code), child.error().message, true};
      note(log_.marker(child.error().message));
      note(store_.finish_attempt(run_.id, attempt, failed.status, failed.exit_code, failed.reason));
      return failed;
    }
    const Watch watched = follow_child(*child, sandbox.has_value());
    note(log_.flush());
    AttemptResult result = outcome(watched, sandbox);
    note(store_.finish_attempt(run_.id, attempt, result.status, result.exit_code, result.reason));
    return result;
  }

  StateStore& store_;
  Run run_;
  RunSpec spec_;
  SecretValues secrets_;
  std::vector<LeaseDevice> devices_;  // this machine's GPUs
  LogWriter& log_;
  std::optional<std::string> broken_;  // the first failed state or log write
};

}  // namespace

std::vector<LeaseDevice> lease_devices(const Config& config) {
  std::vector<LeaseDevice> devices;
  auto local = local_inventory(config);
  if (!local) return devices;
  for (const auto& d : local->devices) {
    if (d.type) devices.push_back({d.index, d.uuid, *d.type, d.memory_gb});
  }
  return devices;
}

util::Result<Run> launch_local(StateStore& store, const RunSpec& spec, const SecretValues& secrets,
                               const std::vector<LeaseDevice>& devices) {
  NewRun fresh;
  fresh.app = spec.app;
  fresh.function = spec.function;
  fresh.cloud = spec.cloud;
  fresh.backend = spec.backend;
  fresh.gpus = spec.gpu_text;
  fresh.spec_json = to_json(spec);
  fresh.supervised = true;  // the supervisor holds the run's lock until it records the end
  auto created = store.create_run(fresh, /*inheritable_lock=*/true);
  if (!created) return created.error();
  const Run run = created->run;
  const std::string dir = run_dir(store.dir(), run.id);
  std::error_code ec;
  std::filesystem::create_directories(dir + "/scratch", ec);

  const std::string log_path = dir + "/supervisor.log";
  const std::string state_dir = store.dir();
  {
    // An SQLite connection must not cross fork(): close it here and reopen it after.
    StateStore closing = std::move(store);
  }
  // The supervisor runs in this (single-threaded) process image, without an exec: starting fast matters.
  auto started = start_detached(log_path, [&] { return supervise(state_dir, run.id, created->lock.fd(), secrets, devices); });
  if (!started) {
    if (auto reopened = StateStore::open(state_dir)) {
      store = std::move(*reopened);
      // Best effort: the error below tells the user; a run left queued is marked lost (its lock is free).
      (void)store.update_status(run.id, RunStatus::failed, "could not start the supervisor", 125);
    }
    return util::make_error(util::ExitCode::backend, fmt::format("cannot start run {}: {}", run.id, started.error().message));
  }
  created->lock.release();  // the supervisor holds its own copy of the lock now
  auto reopened = StateStore::open(state_dir);
  if (!reopened) return reopened.error();
  store = std::move(*reopened);
  return run;
}

int supervise(const std::string& state_dir, const std::string& run_id, int lock_fd, const SecretValues& secrets,
              const std::vector<LeaseDevice>& devices) {
  RunLock lock = RunLock::adopt(lock_fd);
  lock.set_inheritable(false);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) ::sigaction(s, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto store = StateStore::open(state_dir);
  if (!store) {
    fmt::print(stderr, "gpurun supervisor: {}\n", store.error().message);
    return util::to_int(util::ExitCode::backend);
  }
  auto run = store->get_run(run_id);
  if (!run) {
    fmt::print(stderr, "gpurun supervisor: {}\n", run.error().message);
    return util::to_int(util::ExitCode::backend);
  }
  auto spec = run_spec_from_json(run->spec_json);
  if (!spec) {
    // The supervisor's exit code and supervisor.log carry the error when even this write fails.
    (void)store->update_status(run_id, RunStatus::failed, spec.error().message, 125);
    return util::to_int(util::ExitCode::backend);
  }
  std::vector<std::string> secret_strings;
  for (const auto& [name, values] : secrets) {
    for (const auto& [k, v] : values) secret_strings.push_back(v);
  }
  auto log = LogWriter::open(run_dir(state_dir, run_id) + "/log", 1, secret_strings);
  if (!log) {
    // As above: the supervisor's exit code and supervisor.log carry the error.
    (void)store->update_status(run_id, RunStatus::failed, log.error().message, 125);
    return util::to_int(util::ExitCode::backend);
  }
  SpaceReserve reserve(run_dir(state_dir, run_id) + "/reserve");
  Supervisor supervisor(*store, *run, *spec, secrets, devices, *log);
  const auto result = supervisor.run();
  reserve.release();  // room for the last log line and the result on a full disk
  // Best effort: a failed marker still leaves the result; a result that cannot be written leaves
  // the run to be marked lost, with the error in supervisor.log.
  if (result.status != RunStatus::succeeded) (void)log->marker("run " + result.reason);
  (void)log->close();
  if (auto recorded = store->update_status(run_id, result.status, result.reason, result.exit_code); !recorded) {
    fmt::print(stderr, "gpurun supervisor: run {}: cannot record its result ({}): {}\n", run_id, result.reason,
               recorded.error().message);
  }
  return result.exit_code;
}

namespace {

// Kills what is left of a lost run's workload (SIGKILL to its process group), waits up to 5 s for
// it to be gone and frees its GPUs; nothing to do when nothing of it lives.
util::Result<void> end_leftover(StateStore& store, const Run& run) {
  auto leftover = store.leftover_workload(run.id);
  if (!leftover) return leftover.error();
  if (!*leftover) return {};
  util::signal_process_group(**leftover, SIGKILL);
  const auto until = Clock::now() + 5s;
  while (util::process_group_alive(**leftover)) {
    if (Clock::now() >= until) {
      return util::make_error(util::ExitCode::backend,
                              fmt::format("run {}: its workload (process group {}) survived SIGKILL; it keeps its GPUs until it ends",
                                          run.id, (*leftover)->pgid));
    }
    std::this_thread::sleep_for(20ms);
  }
  if (auto reconciled = store.reconcile_lost(); !reconciled) return reconciled.error();
  return {};
}

}  // namespace

std::string local_dry_run(const RunSpec& spec) {
  std::vector<std::string> words;
  for (const auto& word : spec.argv) words.push_back(util::shell_quote(word));
  std::string out = "# local: a detached supervisor on this machine";
  out += spec.gpu_alternatives.empty() ? " runs" : fmt::format(" leases {} (first come, first served), then runs", spec.gpu_text);
  out += fmt::format(" as process group leader in {}:\n{}\n", spec.cwd.empty() ? std::string("the current directory") : spec.cwd,
                     util::join(words, " "));
  if (!spec.image.empty()) {
    out += "# inside bubblewrap, with the image's root filesystem as / (unpacked in the local image store)\n";
  } else if (!spec.mounts.empty()) {
    out += "# inside bubblewrap over this machine's root, each volume bound at its path\n";
  }
  out += fmt::format("# SIGTERM on cancel{}, SIGKILL {} later; the log is <state dir>/runs/<run id>/log\n",
                     spec.timeout ? " or after " + util::format_duration(*spec.timeout) : std::string(),
                     util::format_duration(spec.kill_grace));
  return out;
}

util::Result<void> request_cancel(StateStore& store, const Run& run, bool force) {
  if (run.status == RunStatus::lost) return end_leftover(store, run);
  const std::string path = cancel_path(store.dir(), run.id);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("cannot cancel run {}: {}: {}", run.id, path, std::strerror(errno)));
  }
  const bool written = !force || ::write(fd, "force", 5) == 5;
  const int write_errno = errno;
  ::close(fd);
  if (!written) {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("cannot cancel run {}: {}: {}", run.id, path, std::strerror(write_errno)));
  }
  return {};
}

StopProgress local_stop_progress(const std::string& state_dir, const std::string& run_id) {
  const std::string text = read_small_file(term_path(state_dir, run_id));
  StopProgress progress;
  long long term = 0;
  long long kill_at = 0;
  if (std::sscanf(text.c_str(), "%lld %lld", &term, &kill_at) == 2) {
    progress.term_sent_ms = term;
    progress.kill_at_ms = kill_at;
  }
  return progress;
}

namespace {

// The local backend: runs under a detached supervisor on this machine (launch_local); images
// run from root filesystems unpacked in the local image store.
class LocalBackend final : public Backend {
 public:
  LocalBackend(std::string cloud, Config config) : cloud_(std::move(cloud)), config_(std::move(config)) {}

  // Free/total per GPU type of this machine: its devices less those leased on this cloud.
  util::Result<Capacity> capacity(StateStore& store) override {
    auto leased = store.leased_devices(cloud_);
    if (!leased) return leased.error();
    Capacity capacity{true, {}, "this machine's GPU leases"};
    for (const auto& device : lease_devices(config_)) {
      auto it = std::find_if(capacity.gpus.begin(), capacity.gpus.end(), [&](const GpuCapacity& c) {
        return c.type == device.type && c.memory_gb == device.memory_gb;
      });
      if (it == capacity.gpus.end()) it = capacity.gpus.insert(capacity.gpus.end(), {device.type, device.memory_gb, 0, 0});
      ++it->total;
      const bool busy = std::any_of(leased->begin(), leased->end(), [&](const auto& held) { return held.first == device; });
      if (!busy) ++it->free;
    }
    return capacity;
  }

  std::string_view name() const override { return "local"; }
  bool remote() const override { return false; }

  util::Result<std::string> volume_path(const std::string& state_dir, const std::string& app,
                                        const std::string& volume) const override {
    return fmt::format("{}/volumes/{}/{}", state_dir, app, volume);
  }

  util::Result<void> prepare_image(PrepareContext& ctx, const PlacedFunction& /*placed*/, RunSpec& spec) override {
    if (spec.image.empty()) return {};
    const auto* image = ctx.manifest.find_image(spec.image);
    if (image == nullptr) {
      return util::make_error(util::ExitCode::usage,
                              fmt::format("function '{}': image '{}' is not defined", spec.function, spec.image));
    }
    const std::string store_dir = image_store_dir(ctx.store.dir());
    auto built = image_for_run(ctx, *image);
    if (!built) return built.error();
    if (const auto missing = missing_layers(*built); !missing.empty()) {
      return util::make_error(util::ExitCode::backend,
                              fmt::format("image '{}' ({}): layer {} is not in the local image store; deploy the app again",
                                          spec.image, built->digest, missing.front()));
    }
    spec.image_digest = built->digest;
    spec.image_env = built->env;
    spec.image_workdir = built->workdir;
    spec.cwd = built->workdir;
    if (ctx.dry_run) return {};
    auto rootfs = unpack_rootfs(*built, store_dir);
    if (!rootfs) return rootfs.error();
    spec.image_rootfs = *rootfs;
    return {};
  }

  util::Result<void> check_image_target(const Config& /*config*/, const std::string& /*image*/) const override { return {}; }

  util::Result<ImagePlacement> place_image(PrepareContext& ctx, BuiltImage& image, int /*version*/) override {
    // Local runs use the local image store: it needs the base layers there.
    if (auto fetched = fetch_base_layers(image, image_store_dir(ctx.store.dir())); !fetched) return fetched.error();
    ImagePlacement placement;
    placement.location = {ctx.manifest.app, image.name, image.digest, "", "", "local", 0};
    placement.report.digest = image.digest;
    placement.report.blobs_skipped = static_cast<int>(image.blobs.size());
    return placement;
  }

  util::Result<Run> launch(StateStore& store, const RunSpec& spec, const SecretValues& secrets) override {
    std::vector<LeaseDevice> devices;
    if (!spec.gpu_alternatives.empty()) devices = lease_devices(config_);
    return launch_local(store, spec, secrets, devices);
  }
  util::Result<std::string> dry_run(const RunSpec& spec, const SecretValues& /*secrets*/) override {
    return local_dry_run(spec);
  }
  util::Result<void> cancel(StateStore& store, const Run& run) override { return request_cancel(store, run); }
  util::Result<void> kill(StateStore& store, const Run& run) override { return request_cancel(store, run, true); }
  StopProgress stop_progress(const StateStore& store, const Run& run) const override {
    return local_stop_progress(store.dir(), run.id);
  }
  util::Result<Run> refresh(StateStore& store, const Run& run) override {
    // A failed reconcile only delays marking dead supervisors' runs lost; the run is read anyway.
    (void)store.reconcile_lost();
    return store.get_run(run.id);
  }
  util::Result<LogSource> open_log(const StateStore& store, const Run& run) const override {
    return LogSource{file_log_bytes(run_dir(store.dir(), run.id) + "/log"), LogFormat::records};
  }
  std::string remote_id(const Run& /*run*/) const override { return ""; }

 private:
  std::string cloud_;  // the cloud whose leases its runs take
  Config config_;
};

}  // namespace

util::Result<std::unique_ptr<Backend>> make_local_backend(const CloudConfig* cloud, const Config* config) {
  Config known;
  if (config != nullptr) {
    known = *config;
  } else {
    known.clouds.push_back(builtin_local_cloud());
  }
  return std::unique_ptr<Backend>(new LocalBackend(cloud != nullptr ? cloud->name : "local", std::move(known)));
}

}  // namespace gpurun::cloud
