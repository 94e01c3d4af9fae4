#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include "cloud/state/state.hpp"
#include "util/clock.hpp"

using namespace gpurun::cloud;
using gpurun::util::ExitCode;
namespace util = gpurun::util;

namespace {

// A fresh temporary directory, removed afterwards.
struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "gpurun-state-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string state() const { return path + "/state"; }
};

StateStore open_store(const std::string& dir) {
  auto store = StateStore::open(dir);
  REQUIRE_MESSAGE(store.ok(), store.error().message);
  return std::move(*store);
}

CreatedRun make_run(StateStore& store, const std::string& function = "train") {
  auto run = store.create_run(NewRun{"demo", function, "local", "local", "T4:1", R"({"argv":["python"]})", "", "", true});
  REQUIRE_MESSAGE(run.ok(), run.error().message);
  return std::move(*run);
}

// Runs `body` in a forked child; its return value is the child's exit status.
pid_t fork_child(const std::function<int()>& body) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 1;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  return pid;
}

// In a child: reports why `result` failed and returns `code` as the exit status.
template <class R>
int child_failure(int code, const R& result) {
  if (!result.ok()) std::fprintf(stderr, "child %d: %s\n", static_cast<int>(::getpid()), result.error().message.c_str());
  return code;
}

int wait_child(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<LeaseDevice> t4s(int n) {
  std::vector<LeaseDevice> devices;
  for (int i = 0; i < n; ++i) devices.push_back(LeaseDevice{i, "GPU-t4-" + std::to_string(i), "T4", 16});
  return devices;
}

LeaseTicket enqueue(StateStore& store, const std::string& run_id, std::vector<LeaseAlternative> alternatives) {
  auto ticket = store.enqueue_lease(run_id, "local", alternatives);
  REQUIRE_MESSAGE(ticket.ok(), ticket.error().message);
  return *ticket;
}

LeaseOutcome grant(StateStore& store, LeaseTicket ticket, const std::vector<LeaseDevice>& inventory) {
  auto outcome = store.try_grant(ticket, inventory);
  REQUIRE_MESSAGE(outcome.ok(), outcome.error().message);
  return *outcome;
}

std::string waiting_reason(const LeaseOutcome& outcome) {
  const auto* waiting = std::get_if<LeaseWaiting>(&outcome);
  return waiting ? waiting->reason : "(not waiting)";
}

std::vector<int> granted_indexes(const LeaseOutcome& outcome) {
  std::vector<int> indexes;
  if (const auto* granted = std::get_if<LeaseGranted>(&outcome)) {
    for (const LeaseDevice& d : granted->devices) indexes.push_back(d.index);
  } else {
    indexes.push_back(-1);
  }
  return indexes;
}

int granted_alternative(const LeaseOutcome& outcome) {
  const auto* granted = std::get_if<LeaseGranted>(&outcome);
  return granted ? granted->alternative_index : -1;
}

struct EnvGuard {
  std::string name;
  std::optional<std::string> saved;
  explicit EnvGuard(std::string n) : name(std::move(n)) {
    if (const char* v = std::getenv(name.c_str())) saved = v;
  }
  ~EnvGuard() {
    if (saved) ::setenv(name.c_str(), saved->c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

}  // namespace

TEST_CASE("default_state_dir follows GPURUN_STATE_DIR, XDG_STATE_HOME, then HOME") {
  EnvGuard a("GPURUN_STATE_DIR"), b("XDG_STATE_HOME"), c("HOME");
  ::setenv("HOME", "/home/ada", 1);
  ::unsetenv("XDG_STATE_HOME");
  ::unsetenv("GPURUN_STATE_DIR");
  CHECK(default_state_dir() == "/home/ada/.local/state/gpurun");
  ::setenv("XDG_STATE_HOME", "/xdg", 1);
  CHECK(default_state_dir() == "/xdg/gpurun");
  ::setenv("GPURUN_STATE_DIR", "/custom/state", 1);
  CHECK(default_state_dir() == "/custom/state");
  ::setenv("GPURUN_STATE_DIR", "", 1);
  CHECK(default_state_dir() == "/xdg/gpurun");
}

TEST_CASE("open creates a private state directory and refuses a newer schema") {
  TempDir tmp;
  std::string dir = tmp.path + "/a/b/gpurun";
  {
    StateStore store = open_store(dir);
    CHECK(store.dir() == dir);
  }
  struct stat info {};
  REQUIRE(::stat(dir.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0700);
  CHECK(std::filesystem::exists(dir + "/state.db"));
  open_store(dir);  // reopening an existing database works

  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir + "/state.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "PRAGMA user_version=9", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  auto newer = StateStore::open(dir);
  REQUIRE_FALSE(newer.ok());
  CHECK(newer.error().code == ExitCode::backend);
  CHECK(newer.error().message == "state database " + dir + "/state.db has schema version 9 but this gpurun knows up to 7; upgrade gpurun");
}

TEST_CASE("a state.db that is no database is reported as corrupt at once, with the fix") {
  TempDir tmp;
  const std::string dir = tmp.state();
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/state.db") << "this is not a database, not at all; it is long enough to have a header...........";
  const auto started = std::chrono::steady_clock::now();
  auto store = StateStore::open(dir);
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(store.ok());
  CHECK(store.error().code == ExitCode::backend);
  CHECK(store.error().message == "state database " + dir + "/state.db is corrupt (file is not a database); move it "
                                 "away with its -wal and -shm files and gpurun makes a new one (the runs recorded in "
                                 "it are lost): mkdir " + dir + "/corrupt && mv " + dir + "/state.db* " + dir +
                                 "/corrupt/");
  CHECK(took < std::chrono::milliseconds(500));  // no retrying (it used to take ~2 s)

  // The fix the message gives works: a new, empty database.
  REQUIRE(std::system(("mkdir " + dir + "/corrupt && mv " + dir + "/state.db* " + dir + "/corrupt/").c_str()) == 0);
  StateStore fresh = open_store(dir);
  CHECK(fresh.list_runs(true)->empty());
}

TEST_CASE("format_iso8601 writes UTC with milliseconds") {
  CHECK(format_iso8601(0) == "1970-01-01T00:00:00.000Z");
  CHECK(format_iso8601(1714566896789) == "2024-05-01T12:34:56.789Z");
}

TEST_CASE("run lifecycle sets timestamps once") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  gpurun::util::ManualClock clock(1'714'566'896'789);
  store.set_clock(clock);
  CreatedRun created = make_run(store);
  const Run& run = created.run;
  CHECK(std::regex_match(run.id, std::regex("r[0-9a-z]{12}")));
  CHECK(run.status == RunStatus::queued);
  CHECK(run.attempt == 1);
  CHECK(run.log_dir == tmp.state() + "/runs/" + run.id);
  CHECK(run_lock_held(tmp.state(), run.id));

  Run stored = *store.get_run(run.id);
  CHECK(stored.app == "demo");
  CHECK(stored.function == "train");
  CHECK(stored.gpus == "T4:1");
  CHECK(stored.spec_json == R"({"argv":["python"]})");
  CHECK(stored.created_at == 1'714'566'896'789);
  CHECK(run.id.substr(0, 9) == "rlvnsv0k5");  // "r" + the creation time in base36
  CHECK_FALSE(stored.started_at.has_value());
  CHECK_FALSE(stored.ended_at.has_value());
  CHECK_FALSE(stored.exit_code.has_value());

  CHECK(*store.update_status(run.id, RunStatus::queued, "waiting for 1x T4 on local: all 2 in use"));
  CHECK(store.get_run(run.id)->status_reason == "waiting for 1x T4 on local: all 2 in use");
  CHECK_FALSE(store.get_run(run.id)->started_at.has_value());

  clock.advance(std::chrono::milliseconds(5));
  CHECK(*store.update_status(run.id, RunStatus::running, ""));
  Run running = *store.get_run(run.id);
  REQUIRE(running.started_at.has_value());
  CHECK(*running.started_at == running.created_at + 5);
  CHECK_FALSE(running.ended_at.has_value());
  clock.advance(std::chrono::milliseconds(3));
  CHECK(*store.update_status(run.id, RunStatus::running, "attempt 2"));
  CHECK(store.get_run(run.id)->started_at == running.started_at);  // first running only

  CHECK(*store.update_status(run.id, RunStatus::succeeded, "", 0));
  Run done = *store.get_run(run.id);
  CHECK(done.status == RunStatus::succeeded);
  CHECK(done.exit_code == 0);
  REQUIRE(done.ended_at.has_value());
  CHECK(*done.ended_at == *done.started_at + 3);

  auto missing = store.update_status("rnope", RunStatus::running, "");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message == "run 'rnope' not found; `gpurun ps --all` lists the runs");
}

TEST_CASE("a terminal status is never overwritten") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  CreatedRun created = make_run(store);
  const std::string& id = created.run.id;
  CHECK(*store.update_status(id, RunStatus::failed, "exited with code 3", 3));
  CHECK_FALSE(*store.update_status(id, RunStatus::running, "late writer"));
  CHECK_FALSE(*store.update_status(id, RunStatus::queued, "late writer"));
  CHECK_FALSE(*store.update_status(id, RunStatus::succeeded, "late writer", 0));
  Run run = *store.get_run(id);
  CHECK(run.status == RunStatus::failed);
  CHECK(run.status_reason == "exited with code 3");
  CHECK(run.exit_code == 3);
  CHECK_FALSE(run.started_at.has_value());
  CHECK(run.ended_at.has_value());
  CHECK(is_terminal(RunStatus::preempted));
  CHECK_FALSE(is_terminal(RunStatus::queued));
  CHECK(parse_run_status("timeout") == RunStatus::timeout);
  CHECK_FALSE(parse_run_status("done").has_value());
}

TEST_CASE("runs are found by a unique id prefix and listed newest first") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  gpurun::util::ManualClock clock;
  store.set_clock(clock);
  CreatedRun a = make_run(store, "first");
  clock.advance(std::chrono::milliseconds(1));
  CreatedRun b = make_run(store, "second");
  clock.advance(std::chrono::milliseconds(1));
  CreatedRun c = make_run(store, "third");
  CHECK(a.run.id < b.run.id);  // ids sort by creation
  CHECK(b.run.id < c.run.id);

  // The shortest prefix of `id` that no other run id starts with.
  auto unique_prefix = [&](const std::string& id) {
    for (std::size_t n = 1;; ++n) {
      std::string prefix = id.substr(0, n);
      int users = 0;
      for (const std::string& other : {a.run.id, b.run.id, c.run.id}) users += other.rfind(prefix, 0) == 0 ? 1 : 0;
      if (users == 1) return prefix;
    }
  };
  CHECK(unique_prefix(c.run.id).size() < c.run.id.size());
  CHECK(store.get_run(unique_prefix(c.run.id))->function == "third");
  CHECK(store.get_run(unique_prefix(b.run.id))->function == "second");
  CHECK(store.get_run(unique_prefix(a.run.id))->function == "first");

  auto ambiguous = store.get_run("r");
  REQUIRE_FALSE(ambiguous.ok());
  CHECK(ambiguous.error().code == ExitCode::usage);
  CHECK(ambiguous.error().message == "run id prefix 'r' is ambiguous: it matches " + a.run.id + ", " + b.run.id +
                                         " and " + c.run.id + "; give more characters");
  clock.advance(std::chrono::milliseconds(1));
  CreatedRun d = make_run(store, "fourth");
  CHECK(store.get_run("r").error().message == "run id prefix 'r' is ambiguous: it matches " + a.run.id + ", " +
                                                  b.run.id + ", " + c.run.id + " and 1 more; give more characters");
  auto missing = store.get_run("zz");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message == "run 'zz' not found; `gpurun ps --all` lists the runs");

  REQUIRE(*store.update_status(b.run.id, RunStatus::cancelled, "cancelled by the user"));
  REQUIRE(*store.update_status(c.run.id, RunStatus::running, ""));
  std::vector<std::string> active, all;
  auto list1 = store.list_runs(false).value();
  for (const Run& r : list1) active.push_back(r.function);
  auto list2 = store.list_runs(true).value();
  for (const Run& r : list2) all.push_back(r.function);
  CHECK(active == std::vector<std::string>{"fourth", "third", "first"});
  CHECK(all == std::vector<std::string>{"fourth", "third", "second", "first"});
}

TEST_CASE("attempts are recorded in order and finished once") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  CreatedRun created = make_run(store);
  const std::string& id = created.run.id;
  REQUIRE(store.add_attempt(id, 1).ok());
  REQUIRE(store.finish_attempt(id, 1, RunStatus::failed, 137, "killed by signal 9").ok());
  REQUIRE(store.finish_attempt(id, 1, RunStatus::succeeded, 0, "late").ok());  // no effect
  REQUIRE(store.add_attempt(id, 2).ok());
  CHECK(store.get_run(id)->attempt == 2);
  auto attempts = *store.list_attempts(id);
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0].attempt == 1);
  CHECK(attempts[0].status == RunStatus::failed);
  CHECK(attempts[0].exit_code == 137);
  CHECK(attempts[0].reason == "killed by signal 9");
  CHECK(attempts[0].ended_at.has_value());
  CHECK(attempts[1].attempt == 2);
  CHECK(attempts[1].status == RunStatus::running);
  CHECK_FALSE(attempts[1].ended_at.has_value());
  REQUIRE(store.set_attempt(id, 3).ok());
  CHECK(store.get_run(id)->attempt == 3);
  CHECK(store.add_attempt("rnope", 1).error().message == "run 'rnope' not found; `gpurun ps --all` lists the runs");
}

TEST_CASE("deployments get a new version per deploy and are found by function") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  CHECK_FALSE(store.latest_deployment("vision")->has_value());
  Deployment d{"vision", 0, "sha256:aa", "/src/v/gpurun.yaml", "/src/v", "{}", {"train", "embed"}, {}, "", 0};
  CHECK(*store.record_deployment(d) == 1);
  CHECK(*store.record_deployment(d) == 2);  // the same digest again is still a new version
  d.manifest_digest = "sha256:bb";
  d.functions = {"embed", "serve"};
  CHECK(*store.record_deployment(d) == 3);
  CHECK(*store.record_deployment(Deployment{"audio", 0, "sha256:cc", "/src/a/gpurun.yaml", "/src/a", "{}", {"embed"}, {}, "", 0}) == 1);

  auto latest = *store.latest_deployment("vision");
  REQUIRE(latest.has_value());
  CHECK(latest->version == 3);
  CHECK(latest->manifest_digest == "sha256:bb");
  CHECK(latest->functions == std::vector<std::string>{"embed", "serve"});

  std::vector<std::string> newest, every;
  auto list3 = store.list_deployments(false).value();
  for (const Deployment& x : list3) newest.push_back(x.app + "@" + std::to_string(x.version));
  auto list4 = store.list_deployments(true).value();
  for (const Deployment& x : list4) every.push_back(x.app + "@" + std::to_string(x.version));
  CHECK(newest == std::vector<std::string>{"audio@1", "vision@3"});
  CHECK(every == std::vector<std::string>{"audio@1", "vision@3", "vision@2", "vision@1"});

  std::vector<std::string> embed;
  auto list5 = store.find_function("embed").value();
  for (const Deployment& x : list5) embed.push_back(x.app + "@" + std::to_string(x.version));
  CHECK(embed == std::vector<std::string>{"audio@1", "vision@3"});
  CHECK(store.find_function("train")->empty());  // only in older versions
  CHECK(store.find_function("serve")->size() == 1);
}

TEST_CASE("volumes stay where they were created") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  CHECK_FALSE(store.get_volume("demo", "weights")->has_value());
  Volume first = *store.ensure_volume("demo", "weights", "local", "/data/weights");
  CHECK(first.cloud == "local");
  Volume again = *store.ensure_volume("demo", "weights", "slurm-a", "/scratch/weights");
  CHECK(again.cloud == "local");
  CHECK(again.path == "/data/weights");
  CHECK(again.created_at == first.created_at);
  REQUIRE(store.ensure_volume("other", "weights", "slurm-a", "/scratch/w").ok());
  auto got = *store.get_volume("demo", "weights");
  REQUIRE(got.has_value());
  CHECK(got->path == "/data/weights");
  CHECK(store.list_volumes("demo")->size() == 1);
  CHECK(store.list_volumes()->size() == 2);
}

TEST_CASE("run locks: held while open, inheritable on request") {
  TempDir tmp;
  CHECK_FALSE(run_lock_held(tmp.path, "rnone"));  // no lock file: free
  {
    auto lock = RunLock::acquire(tmp.path, "r1");
    REQUIRE(lock.ok());
    CHECK(run_lock_held(tmp.path, "r1"));
    CHECK((::fcntl(lock->fd(), F_GETFD) & FD_CLOEXEC) != 0);
    auto second = RunLock::acquire(tmp.path, "r1");
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().message == "run r1: another gpurun process supervises it (" + tmp.path +
                                        "/runs/r1/lock is locked); wait for it or cancel the run");
    lock->set_inheritable(true);
    CHECK((::fcntl(lock->fd(), F_GETFD) & FD_CLOEXEC) == 0);
  }
  CHECK_FALSE(run_lock_held(tmp.path, "r1"));
  auto inheritable = RunLock::acquire(tmp.path, "r2", true);
  REQUIRE(inheritable.ok());
  CHECK((::fcntl(inheritable->fd(), F_GETFD) & FD_CLOEXEC) == 0);
  RunLock moved = std::move(*inheritable);
  CHECK(run_lock_held(tmp.path, "r2"));
  moved.release();
  CHECK_FALSE(run_lock_held(tmp.path, "r2"));
}

TEST_CASE("a run whose supervisor died is marked lost and its lease freed") {
  TempDir tmp;
  int ids[2];
  REQUIRE(::pipe(ids) == 0);
  // The child creates the run (taking its lock), gets a GPU, then dies without a result.
  pid_t child = fork_child([&]() -> int {
    ::close(ids[0]);
    auto store = StateStore::open(tmp.state());
    if (!store) return 2;
    auto run = store->create_run(NewRun{"demo", "train", "local", "local", "T4:1", "{}", "", "", true});
    if (!run) return 3;
    if (!store->add_attempt(run->run.id, 1) || !store->update_status(run->run.id, RunStatus::running, "")) return 4;
    auto ticket = store->enqueue_lease(run->run.id, "local", {{"T4", 0, 1}});
    if (!ticket) return 5;
    auto outcome = store->try_grant(*ticket, t4s(1));
    if (!outcome || !std::holds_alternative<LeaseGranted>(*outcome)) return 6;
    if (::write(ids[1], run->run.id.data(), run->run.id.size()) < 0) return 7;
    ::_exit(0);  // no status update, no release
  });
  ::close(ids[1]);
  char buffer[64] = {};
  ssize_t n = ::read(ids[0], buffer, sizeof buffer);
  ::close(ids[0]);
  REQUIRE(wait_child(child) == 0);
  REQUIRE(n > 0);
  std::string id(buffer, static_cast<std::size_t>(n));

  StateStore store = open_store(tmp.state());
  CHECK(store.leased_devices("local")->size() == 1);
  CHECK(*store.reconcile_lost() == std::vector<std::string>{id});
  Run run = *store.get_run(id);
  CHECK(run.status == RunStatus::lost);
  CHECK(run.status_reason == "its supervisor exited without recording a result (killed?)");
  CHECK(run.ended_at.has_value());
  CHECK(store.list_attempts(id)->at(0).status == RunStatus::lost);
  CHECK(store.leased_devices("local")->empty());
  CHECK(store.reconcile_lost()->empty());

  // The freed device goes to the next run.
  CreatedRun next = make_run(store);
  LeaseTicket ticket = enqueue(store, next.run.id, {{"T4", 0, 1}});
  CHECK(granted_indexes(grant(store, ticket, t4s(1))) == std::vector<int>{0});
}

TEST_CASE("a lost run's GPUs stay leased while its workload's process group lives") {
  TempDir tmp;
  // The workload: a process in its own group that outlives its supervisor.
  const pid_t workload = ::fork();
  REQUIRE(workload >= 0);
  if (workload == 0) {
    ::setpgid(0, 0);
    ::pause();
    ::_exit(0);
  }
  ::setpgid(workload, workload);
  const util::ProcessGroup group{workload, *util::process_start_ticks(workload)};
  int ids[2];
  REQUIRE(::pipe(ids) == 0);
  // The supervisor: creates the run, gets a GPU, records the workload's group, then dies.
  pid_t supervisor = fork_child([&]() -> int {
    ::close(ids[0]);
    auto store = StateStore::open(tmp.state());
    if (!store) return 2;
    auto run = store->create_run(NewRun{"demo", "train", "local", "local", "T4:1", "{}", "", "", true});
    if (!run || !store->add_attempt(run->run.id, 1) || !store->update_status(run->run.id, RunStatus::running, "")) return 3;
    auto ticket = store->enqueue_lease(run->run.id, "local", {{"T4", 0, 1}});
    if (!ticket || !store->try_grant(*ticket, t4s(1))) return 4;
    if (!store->set_attempt_workload(run->run.id, 1, group)) return 5;
    if (::write(ids[1], run->run.id.data(), run->run.id.size()) < 0) return 6;
    ::_exit(0);
  });
  ::close(ids[1]);
  char buffer[64] = {};
  ssize_t n = ::read(ids[0], buffer, sizeof buffer);
  ::close(ids[0]);
  REQUIRE(wait_child(supervisor) == 0);
  REQUIRE(n > 0);
  std::string id(buffer, static_cast<std::size_t>(n));

  StateStore store = open_store(tmp.state());
  CHECK(*store.reconcile_lost() == std::vector<std::string>{id});
  CHECK(store.get_run(id)->status_reason ==
        "its supervisor exited without recording a result (killed?); its workload (process group " + std::to_string(workload) +
            ") still runs and keeps its GPUs: 'gpurun cancel " + id + "' stops it");
  CHECK(store.leased_devices("local")->size() == 1);
  auto leftover = store.leftover_workload(id);
  REQUIRE(leftover.ok());
  REQUIRE(leftover->has_value());
  CHECK((*leftover)->pgid == workload);
  // Another run waits for the device.
  CreatedRun next = make_run(store);
  LeaseTicket ticket = enqueue(store, next.run.id, {{"T4", 0, 1}});
  CHECK(std::holds_alternative<LeaseWaiting>(*store.try_grant(ticket, t4s(1))));

  // Once the group is gone its devices are free.
  ::kill(-workload, SIGKILL);
  CHECK(wait_child(workload) == 128 + SIGKILL);
  CHECK_FALSE(util::process_group_alive(group));
  CHECK(store.reconcile_lost()->empty());
  CHECK(store.leased_devices("local")->empty());
  CHECK_FALSE(store.leftover_workload(id)->has_value());
  CHECK(granted_indexes(grant(store, ticket, t4s(1))) == std::vector<int>{0});
}

TEST_CASE("a process group is told from a later one with the same id by its leader's start time") {
  const auto start = util::process_start_ticks(::getpid());
  REQUIRE(start.has_value());
  CHECK(*start > 0);
  CHECK_FALSE(util::process_start_ticks(-5).has_value());
  const pid_t leader = ::fork();
  REQUIRE(leader >= 0);
  if (leader == 0) {
    ::setpgid(0, 0);
    ::pause();
    ::_exit(0);
  }
  ::setpgid(leader, leader);
  const util::ProcessGroup group{leader, *util::process_start_ticks(leader)};
  CHECK(util::process_group_alive(group));
  const util::ProcessGroup reused{leader, group.leader_start + 1};
  CHECK_FALSE(util::process_group_alive(reused));
  CHECK_FALSE(util::signal_process_group(reused, SIGKILL));
  CHECK(util::signal_process_group(group, SIGKILL));
  CHECK(wait_child(leader) == 128 + SIGKILL);
  CHECK_FALSE(util::process_group_alive(group));
}

TEST_CASE("a run whose supervisor is alive is not lost") {
  TempDir tmp;
  int ready[2], go[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(go) == 0);
  pid_t child = fork_child([&]() -> int {
    ::close(ready[0]);
    ::close(go[1]);
    auto store = StateStore::open(tmp.state());
    if (!store) return 2;
    auto run = store->create_run(NewRun{"demo", "train", "local", "local", "", "{}", "", "", true});
    if (!run) return 3;
    if (::write(ready[1], run->run.id.data(), run->run.id.size()) < 0) return 4;
    char c;
    while (::read(go[0], &c, 1) > 0) {
    }
    return 0;  // exits holding the lock, without a result
  });
  ::close(ready[1]);
  ::close(go[0]);
  char buffer[64] = {};
  ssize_t n = ::read(ready[0], buffer, sizeof buffer);
  ::close(ready[0]);
  REQUIRE(n > 0);
  std::string id(buffer, static_cast<std::size_t>(n));

  StateStore store = open_store(tmp.state());
  CHECK(store.reconcile_lost()->empty());
  CHECK(store.get_run(id)->status == RunStatus::queued);
  ::close(go[1]);
  REQUIRE(wait_child(child) == 0);
  CHECK(*store.reconcile_lost() == std::vector<std::string>{id});
  CHECK(store.get_run(id)->status == RunStatus::lost);
}

TEST_CASE("GPU leases are exclusive across processes") {
  TempDir tmp;
  // The children also race to create the state directory and the schema.
  std::string counter = tmp.path + "/counter";
  std::ofstream(counter) << "0 0\n";
  // Adds `delta` to the number of children holding a GPU and tracks the maximum.
  auto track = [&](int delta) {
    int fd = ::open(counter.c_str(), O_RDWR);
    ::flock(fd, LOCK_EX);
    int current = 0, most = 0;
    char text[64] = {};
    if (::pread(fd, text, sizeof text - 1, 0) > 0) std::sscanf(text, "%d %d", &current, &most);
    current += delta;
    most = std::max(most, current);
    int length = std::snprintf(text, sizeof text, "%d %d\n", current, most);
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text, static_cast<std::size_t>(length), 0) != length) most = -1;
    ::close(fd);
  };
  constexpr int children = 6;
  std::vector<pid_t> pids;
  for (int i = 0; i < children; ++i) {
    pids.push_back(fork_child([&]() -> int {
      auto store = StateStore::open(tmp.state());
      if (!store) return child_failure(2, store);
      auto run = store->create_run(NewRun{"demo", "train", "local", "local", "T4:1", "{}", "", "", true});
      if (!run) return child_failure(3, run);
      auto ticket = store->enqueue_lease(run->run.id, "local", {{"T4", 0, 1}});
      if (!ticket) return child_failure(4, ticket);
      auto outcome = store->wait_for_grant(*ticket, t4s(2), std::chrono::milliseconds(5));
      if (!outcome) return child_failure(5, outcome);
      if (!std::holds_alternative<LeaseGranted>(*outcome)) return 5;
      track(+1);
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
      track(-1);
      if (!store->release_lease(*ticket)) return 6;
      if (!store->update_status(run->run.id, RunStatus::succeeded, "", 0)) return 7;
      return 0;
    }));
  }
  for (pid_t pid : pids) CHECK(wait_child(pid) == 0);
  std::ifstream in(counter);
  int current = -1, most = -1;
  in >> current >> most;
  CHECK(current == 0);
  CHECK(most == 2);
  StateStore store = open_store(tmp.state());
  CHECK(store.list_runs(false)->empty());
  CHECK(store.list_runs(true)->size() == children);
  CHECK(store.leased_devices("local")->empty());
}

TEST_CASE("GPU leases honour an upper memory bound (an exact variant)") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  auto run = make_run(store);
  const std::vector<LeaseDevice> inventory{LeaseDevice{0, "GPU-a", "H100", 94}, LeaseDevice{1, "GPU-b", "H100", 80}};
  LeaseTicket exact = enqueue(store, run.run.id, {{"H100", 80, 1, 80}});
  CHECK(granted_indexes(grant(store, exact, inventory)) == std::vector<int>{1});
  auto other = make_run(store);
  LeaseTicket none = enqueue(store, other.run.id, {{"H100", 40, 1, 48}});
  const auto outcome = grant(store, none, inventory);
  const auto* impossible = std::get_if<LeaseImpossible>(&outcome);
  REQUIRE(impossible != nullptr);
  CHECK(impossible->reason == "1x H100 with 40-48 GB asked, local has 0");
}

TEST_CASE("GPU leases are first come, first served") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  std::vector<CreatedRun> runs;
  for (int i = 0; i < 5; ++i) runs.push_back(make_run(store));
  auto inventory = t4s(2);
  LeaseTicket a = enqueue(store, runs[0].run.id, {{"T4", 0, 1}});
  LeaseTicket b = enqueue(store, runs[1].run.id, {{"T4", 0, 1}});
  CHECK(granted_indexes(grant(store, a, inventory)) == std::vector<int>{0});
  CHECK(granted_indexes(grant(store, b, inventory)) == std::vector<int>{1});
  LeaseTicket big = enqueue(store, runs[2].run.id, {{"T4", 0, 2}});
  LeaseTicket d = enqueue(store, runs[3].run.id, {{"T4", 0, 1}});
  LeaseTicket e = enqueue(store, runs[4].run.id, {{"T4", 0, 1}});
  CHECK(waiting_reason(grant(store, big, inventory)) == "all 2 in use");
  CHECK(waiting_reason(grant(store, d, inventory)) == "all 2 in use, 1 request ahead");

  REQUIRE(store.release_lease(a).ok());
  CHECK(waiting_reason(grant(store, d, inventory)) == "1 of 2 in use, 1 request ahead");
  CHECK(waiting_reason(grant(store, e, inventory)) == "1 of 2 in use, 2 requests ahead");
  CHECK(waiting_reason(grant(store, big, inventory)) == "1 of 2 in use");

  REQUIRE(store.update_status(runs[1].run.id, RunStatus::succeeded, "", 0).ok());  // ending frees b's lease
  CHECK(waiting_reason(grant(store, e, inventory)) == "0 of 2 in use, 2 requests ahead");
  LeaseOutcome granted = grant(store, big, inventory);
  CHECK(granted_indexes(granted) == std::vector<int>{0, 1});
  CHECK(granted_indexes(grant(store, big, inventory)) == std::vector<int>{0, 1});  // asking again: same devices
  CHECK(waiting_reason(grant(store, d, inventory)) == "all 2 in use");
  CHECK(waiting_reason(grant(store, e, inventory)) == "all 2 in use, 1 request ahead");

  REQUIRE(store.release_lease(big).ok());
  REQUIRE(store.release_lease(big).ok());  // idempotent
  CHECK(granted_indexes(grant(store, e, inventory)) == std::vector<int>{-1});  // d is still ahead
  CHECK(granted_indexes(grant(store, d, inventory)) == std::vector<int>{0});
  CHECK(granted_indexes(grant(store, e, inventory)) == std::vector<int>{1});
  auto leased = *store.leased_devices("local");
  REQUIRE(leased.size() == 2);
  CHECK(leased[0].second == runs[3].run.id);
  CHECK(leased[1].second == runs[4].run.id);

  auto gone = store.try_grant(big, inventory);
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().message == "GPU lease " + std::to_string(big) +
                                    " no longer exists: it was released, or its run ended or was lost; start the run again");
}

TEST_CASE("a waiting request does not block later requests for other GPU types") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  std::vector<CreatedRun> runs;
  for (int i = 0; i < 5; ++i) runs.push_back(make_run(store));
  std::vector<LeaseDevice> inventory{{0, "GPU-a", "A100", 40}, {1, "GPU-t1", "T4", 16}, {2, "GPU-t2", "T4", 16}};
  LeaseTicket holder = enqueue(store, runs[0].run.id, {{"A100", 40, 1}});
  CHECK(granted_indexes(grant(store, holder, inventory)) == std::vector<int>{0});
  LeaseTicket waiter = enqueue(store, runs[1].run.id, {{"A100", 40, 1}});
  CHECK(waiting_reason(grant(store, waiter, inventory)) == "all 1 in use");
  LeaseTicket t4 = enqueue(store, runs[2].run.id, {{"t4", 0, 1}});
  CHECK(granted_indexes(grant(store, t4, inventory)) == std::vector<int>{1});
  // Its A100 alternative is behind the waiter, its T4 one is not.
  LeaseTicket flexible = enqueue(store, runs[3].run.id, {{"A100", 40, 1}, {"T4", 0, 1}});
  LeaseOutcome outcome = grant(store, flexible, inventory);
  CHECK(granted_alternative(outcome) == 1);
  CHECK(granted_indexes(outcome) == std::vector<int>{2});
  LeaseTicket late = enqueue(store, runs[4].run.id, {{"A100", 40, 1}, {"T4", 0, 1}});
  CHECK(waiting_reason(grant(store, late, inventory)) == "all 3 in use, 1 request ahead");
  REQUIRE(store.release_lease(holder).ok());
  CHECK(waiting_reason(grant(store, late, inventory)) == "2 of 3 in use, 1 request ahead");
  CHECK(granted_indexes(grant(store, waiter, inventory)) == std::vector<int>{0});
}

TEST_CASE("requests the inventory can never satisfy are impossible and block nobody") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  CreatedRun r1 = make_run(store), r2 = make_run(store), r3 = make_run(store);
  LeaseTicket four = enqueue(store, r1.run.id, {{"T4", 0, 4}});
  auto outcome = grant(store, four, t4s(2));
  REQUIRE(std::holds_alternative<LeaseImpossible>(outcome));
  CHECK(std::get<LeaseImpossible>(outcome).reason == "4x T4 asked, local has 2");
  LeaseTicket big = enqueue(store, r2.run.id, {{"H100", 0, 1}, {"A100", 80, 1}});
  outcome = grant(store, big, {{0, "GPU-a", "A100", 40}});
  REQUIRE(std::holds_alternative<LeaseImpossible>(outcome));
  CHECK(std::get<LeaseImpossible>(outcome).reason == "1x H100 asked, local has 0; 1x A100 with >= 80 GB asked, local has 0");
  LeaseTicket one = enqueue(store, r3.run.id, {{"T4", 0, 1}});
  CHECK(granted_indexes(grant(store, one, t4s(2))) == std::vector<int>{0});

  auto none = store.enqueue_lease(r3.run.id, "local", {});
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message ==
        "GPU lease for run " + r3.run.id + ": every alternative must ask for at least 1 GPU; this is a gpurun bug");
  CHECK(store.enqueue_lease("rnope", "local", {{"T4", 0, 1}}).error().message ==
        "run 'rnope' not found; `gpurun ps --all` lists the runs");
}

TEST_CASE("alternatives are tried in order, smallest sufficient memory first") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  CreatedRun r1 = make_run(store), r2 = make_run(store), r3 = make_run(store);
  std::vector<LeaseDevice> inventory{{0, "GPU-big", "A100", 80}, {1, "GPU-mid", "A100", 40}, {2, "GPU-t4", "T4", 16}};
  LeaseOutcome first = grant(store, enqueue(store, r1.run.id, {{"A100", 40, 1}}), inventory);
  CHECK(granted_indexes(first) == std::vector<int>{1});  // the exact 40 GB match, not the 80 GB
  CHECK(std::get<LeaseGranted>(first).devices.at(0) == LeaseDevice{1, "GPU-mid", "A100", 40});
  LeaseOutcome second = grant(store, enqueue(store, r2.run.id, {{"H100", 0, 1}, {"T4", 0, 1}, {"A100", 40, 1}}), inventory);
  CHECK(granted_alternative(second) == 1);
  CHECK(granted_indexes(second) == std::vector<int>{2});
  LeaseOutcome third = grant(store, enqueue(store, r3.run.id, {{"T4", 0, 1}, {"A100", 40, 1}}), inventory);
  CHECK(granted_alternative(third) == 1);
  CHECK(granted_indexes(third) == std::vector<int>{0});
}

TEST_CASE("wait_for_grant reports progress and stops when cancelled") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  CreatedRun holder = make_run(store), waiter = make_run(store);
  REQUIRE(std::holds_alternative<LeaseGranted>(grant(store, enqueue(store, holder.run.id, {{"T4", 0, 1}}), t4s(1))));
  LeaseTicket ticket = enqueue(store, waiter.run.id, {{"T4", 0, 1}});
  std::atomic<bool> cancelled{false};
  std::vector<std::string> reasons;
  auto outcome = store.wait_for_grant(ticket, t4s(1), std::chrono::milliseconds(1), [&](const std::string& reason) {
    reasons.push_back(reason);
    cancelled = true;
  }, &cancelled);
  REQUIRE_FALSE(outcome.ok());
  CHECK(outcome.error().code == ExitCode::cancelled);
  CHECK(outcome.error().message == "waiting for GPUs: cancelled");
  CHECK(reasons == std::vector<std::string>{"all 1 in use"});

  holder.lock.release();  // the holder's supervisor dies: wait_for_grant reconciles and gets its GPU
  auto granted = store.wait_for_grant(ticket, t4s(1), std::chrono::milliseconds(1));
  REQUIRE(granted.ok());
  CHECK(granted_indexes(*granted) == std::vector<int>{0});
  CHECK(store.get_run(holder.run.id)->status == RunStatus::lost);
}

TEST_CASE("GPUs used by processes outside gpurun count as busy, FIFO kept") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  std::vector<CreatedRun> runs;
  for (int i = 0; i < 4; ++i) runs.push_back(make_run(store));
  const auto inventory = t4s(2);
  auto grant_with = [&](LeaseTicket ticket, const ExternalUse& external) {
    auto outcome = store.try_grant(ticket, inventory, external);
    REQUIRE_MESSAGE(outcome.ok(), outcome.error().message);
    return *outcome;
  };
  // Device 0 is in use outside gpurun: the other one is taken.
  LeaseTicket a = enqueue(store, runs[0].run.id, {{"T4", 0, 1}});
  CHECK(granted_indexes(grant_with(a, {{"GPU-t4-0", {4242}}})) == std::vector<int>{1});
  LeaseTicket b = enqueue(store, runs[1].run.id, {{"T4", 0, 1}});
  CHECK(waiting_reason(grant_with(b, {{"GPU-t4-0", {4242}}})) == "all 2 in use (GPU 0 by a process outside gpurun: pid 4242)");
  // A device gpurun leased is gpurun's, whatever runs on it; several pids, and an unknown one.
  CHECK(waiting_reason(grant_with(b, {{"GPU-t4-0", {7, 9}}, {"GPU-t4-1", {11}}})) ==
        "all 2 in use (GPU 0 by processes outside gpurun: pids 7, 9)");
  CHECK(waiting_reason(grant_with(b, {{"GPU-t4-0", {}}})) == "all 2 in use (GPU 0 by a process outside gpurun)");
  // A later request waits behind b even for the device b waits for.
  LeaseTicket c = enqueue(store, runs[2].run.id, {{"T4", 0, 1}});
  REQUIRE(store.release_lease(a).ok());
  CHECK(waiting_reason(grant_with(c, {{"GPU-t4-0", {4242}}})) ==
        "1 of 2 in use (GPU 0 by a process outside gpurun: pid 4242), 1 request ahead");
  CHECK(granted_indexes(grant_with(b, {{"GPU-t4-0", {4242}}})) == std::vector<int>{1});
  CHECK(waiting_reason(grant_with(c, {{"GPU-t4-0", {4242}}})) == "all 2 in use (GPU 0 by a process outside gpurun: pid 4242)");
  // The outside process ends: device 0 is free again.
  CHECK(granted_indexes(grant_with(c, {})) == std::vector<int>{0});
  // Outside use never makes a request impossible: it waits.
  LeaseTicket both = enqueue(store, runs[3].run.id, {{"T4", 0, 2}});
  REQUIRE(store.release_lease(b).ok());
  REQUIRE(store.release_lease(c).ok());
  CHECK(waiting_reason(grant_with(both, {{"GPU-t4-1", {5}}})) == "1 of 2 in use (GPU 1 by a process outside gpurun: pid 5)");
}

TEST_CASE("wait_for_grant asks for outside use at most once per interval, and again while waiting") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  CreatedRun waiter = make_run(store);
  LeaseTicket ticket = enqueue(store, waiter.run.id, {{"T4", 0, 1}});
  int asked = 0;
  std::vector<std::string> reasons;
  const auto started = std::chrono::steady_clock::now();
  auto outcome = store.wait_for_grant(
      ticket, t4s(1), std::chrono::milliseconds(5), [&](const std::string& reason) { reasons.push_back(reason); }, nullptr,
      [&]() -> ExternalUse {
        ++asked;
        return asked < 3 ? ExternalUse{{"GPU-t4-0", {4242}}} : ExternalUse{};
      },
      std::chrono::milliseconds(200));
  const auto waited = std::chrono::steady_clock::now() - started;
  REQUIRE(outcome.ok());
  CHECK(granted_indexes(*outcome) == std::vector<int>{0});
  CHECK(asked == 3);
  CHECK(waited >= std::chrono::milliseconds(400));  // two intervals of 200 ms, polled every 5 ms
  CHECK(reasons == std::vector<std::string>{"all 1 in use (GPU 0 by a process outside gpurun: pid 4242)"});
}

TEST_CASE("image locations: recorded per digest and cloud, a v1 database is migrated") {
  TempDir temp;
  const std::string dir = temp.state();
  {
    auto store = StateStore::open(dir);
    REQUIRE(store.ok());
  }
  // Pretend the database is a version-1 one: drop the new table and the version.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir + "/state.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "DROP TABLE image_locations; ALTER TABLE runs DROP COLUMN remote_id; ALTER TABLE attempts DROP COLUMN workload_pgid; "
                           "ALTER TABLE attempts DROP COLUMN workload_start; ALTER TABLE deployments DROP COLUMN images_json; "
                           "ALTER TABLE deployments DROP COLUMN note; ALTER TABLE runs DROP COLUMN supervised; PRAGMA user_version=1", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  auto store = StateStore::open(dir);
  REQUIRE(store.ok());
  Deployment d{"app", 0, "sha256:mm", "/a/gpurun.yaml", "/a", "{}", {"train"}, {{"", "train", "sha256:aa", "local", "", "", 0}}, "", 0};
  REQUIRE(*store->record_deployment(d) == 1);  // version 5's columns were added
  CHECK((*store->get_deployment("app", 1))->images.at(0).digest == "sha256:aa");
  REQUIRE(store->record_image_locations({{"app", "train", "sha256:aa", "local", "", "local", 5},
                                         {"app", "train", "sha256:aa", "hpc", "127.0.0.1:5000", "app/train", 6}})
              .ok());
  REQUIRE(store->record_image_locations({{"app", "train", "sha256:aa", "hpc", "127.0.0.1:5000", "app/train", 7}}).ok());
  auto list = store->list_image_locations("app");
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK(list->at(0).cloud == "hpc");
  CHECK(list->at(0).pushed_at == 7);
  CHECK(list->at(1).cloud == "local");
  CHECK(store->list_image_locations("other")->empty());
}

TEST_CASE("a version-6 database: runs without a backend id become supervised, remote ones do not") {
  TempDir temp;
  const std::string dir = temp.state();
  std::string local_id, remote_id;
  {
    StateStore store = open_store(dir);
    CreatedRun local = make_run(store, "here");
    NewRun remote{"demo", "there", "hpc", "slurm", "", "{}", "", ""};
    auto far = store.create_run(remote);
    REQUIRE(far.ok());
    REQUIRE(store.set_remote_id(far->run.id, "4242").ok());
    local_id = local.run.id;
    remote_id = far->run.id;
  }  // both run locks are released here: nobody supervises either run now
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir + "/state.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "ALTER TABLE runs DROP COLUMN supervised; PRAGMA user_version=6", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  sqlite3_close(db);
  StateStore store = open_store(dir);
  CHECK(*store.reconcile_lost() == std::vector<std::string>{local_id});
  CHECK(store.get_run(remote_id)->status == RunStatus::queued);
}

TEST_CASE("a deployment keeps its frozen images and note; an app's history is deleted whole") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  Deployment d{"vision", 0, "sha256:aa", "/src/v/gpurun.yaml", "/src/v", "{}", {"train"}, {}, "", 0};
  d.images = {{"", "trainer", "sha256:11", "gcp", "http://r:5000", "vision/trainer", 0},
              {"", "trainer", "sha256:11", "local", "", "", 0}};
  CHECK(*store.record_deployment(d) == 1);
  d.images.clear();
  d.note = "rollback to v1";
  CHECK(*store.record_deployment(d) == 2);
  auto first = *store.get_deployment("vision", 1);
  REQUIRE(first.has_value());
  REQUIRE(first->images.size() == 2);
  CHECK(first->images[0].digest == "sha256:11");
  CHECK(first->images[0].registry == "http://r:5000");
  CHECK(first->images[1].cloud == "local");
  CHECK(first->note.empty());
  auto history = *store.app_history("vision");
  REQUIRE(history.size() == 2);
  CHECK(history[1].note == "rollback to v1");
  CHECK_FALSE(store.get_deployment("vision", 3)->has_value());
  CHECK(*store.delete_app("vision") == 2);
  CHECK(store.app_history("vision")->empty());
  CHECK(store.find_function("train")->empty());
  CHECK(*store.record_deployment(d) == 1);  // a deleted app starts again at v1
}

TEST_CASE("delete_ended_runs forgets ended runs and never an active one") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  NewRun fresh;
  fresh.app = "a";
  fresh.function = "f";
  fresh.cloud = "local";
  fresh.backend = "local";
  auto active = store.create_run(fresh);
  auto ended = store.create_run(fresh);
  REQUIRE(active.ok());
  REQUIRE(ended.ok());
  REQUIRE(store.update_status(ended->run.id, RunStatus::succeeded, "", 0).ok());
  CHECK(*store.delete_ended_runs({active->run.id, ended->run.id}) == 1);
  auto left = *store.list_runs(true);
  REQUIRE(left.size() == 1);
  CHECK(left[0].id == active->run.id);
}

TEST_CASE("list_runs filters by app and status and limits in SQL; count_runs ignores the limit") {
  TempDir tmp;
  StateStore store = open_store(tmp.state());
  gpurun::util::ManualClock clock(1'714'566'896'789);
  store.set_clock(clock);
  std::vector<std::string> ids;
  for (const char* app : {"a", "b", "a", "a"}) {
    clock.advance(std::chrono::milliseconds(10));
    auto created = store.create_run(NewRun{app, "f", "local", "local", "", "{}", "", "", true});
    REQUIRE(created.ok());
    ids.push_back(created->run.id);
  }
  REQUIRE(*store.update_status(ids[0], RunStatus::failed, "failed with exit code 1", 1));
  REQUIRE(*store.update_status(ids[3], RunStatus::running, ""));
  auto listed = [&](const RunFilter& filter) {
    std::vector<std::string> out;
    auto runs = store.list_runs(filter);
    REQUIRE(runs.ok());
    for (const auto& run : *runs) out.push_back(run.id);
    return out;
  };
  RunFilter active;
  CHECK(listed(active) == std::vector<std::string>{ids[3], ids[2], ids[1]});
  RunFilter app_a;
  app_a.all = true;
  app_a.app = "a";
  CHECK(listed(app_a) == std::vector<std::string>{ids[3], ids[2], ids[0]});
  RunFilter failed;
  failed.status = RunStatus::failed;  // a status finds ended runs without `all`
  CHECK(listed(failed) == std::vector<std::string>{ids[0]});
  RunFilter limited = app_a;
  limited.limit = 2;
  CHECK(listed(limited) == std::vector<std::string>{ids[3], ids[2]});
  CHECK(*store.count_runs(limited) == 3);
  RunFilter running_b;
  running_b.app = "b";
  running_b.status = RunStatus::running;
  CHECK(listed(running_b).empty());
  CHECK(*store.count_runs(running_b) == 0);
}
