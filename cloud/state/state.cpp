#include "cloud/state/state.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fmt/format.h>
#include <random>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "cloud/state/sqlite_db.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

using detail::Database;
using detail::guarded;
using detail::SqliteError;
using detail::Statement;
using detail::Transaction;
using util::ExitCode;
using util::make_error;

namespace {

constexpr int schema_version = 7;
constexpr const char* active_sql = "('queued','running')";
constexpr const char* lost_reason = "its supervisor exited without recording a result (killed?)";

constexpr const char* schema_sql = R"sql(
CREATE TABLE runs(
  id TEXT PRIMARY KEY,
  app TEXT NOT NULL,
  function TEXT NOT NULL,
  cloud TEXT NOT NULL,
  backend TEXT NOT NULL,
  status TEXT NOT NULL,
  status_reason TEXT NOT NULL DEFAULT '',
  exit_code INTEGER,
  gpus TEXT NOT NULL DEFAULT '',
  attempt INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  ended_at INTEGER,
  spec_json TEXT NOT NULL DEFAULT '',
  log_dir TEXT NOT NULL DEFAULT '',
  remote_id TEXT NOT NULL DEFAULT '');
CREATE INDEX runs_by_status ON runs(status);
CREATE TABLE attempts(
  run_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  status TEXT NOT NULL,
  exit_code INTEGER,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  reason TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(run_id, attempt));
CREATE TABLE deployments(
  app TEXT NOT NULL,
  version INTEGER NOT NULL,
  manifest_digest TEXT NOT NULL,
  manifest_path TEXT NOT NULL,
  manifest_dir TEXT NOT NULL,
  plan_json TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(app, version));
CREATE TABLE deployment_functions(
  app TEXT NOT NULL,
  version INTEGER NOT NULL,
  function TEXT NOT NULL,
  PRIMARY KEY(app, version, function));
CREATE INDEX deployment_functions_by_name ON deployment_functions(function);
CREATE TABLE volumes(
  app TEXT NOT NULL,
  name TEXT NOT NULL,
  cloud TEXT NOT NULL,
  path TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(app, name));
CREATE TABLE lease_tickets(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL,
  cloud TEXT NOT NULL,
  alternatives_json TEXT NOT NULL,
  granted INTEGER NOT NULL DEFAULT 0,
  alternative_index INTEGER,
  created_at INTEGER NOT NULL,
  granted_at INTEGER);
CREATE INDEX lease_tickets_by_cloud ON lease_tickets(cloud, granted, seq);
CREATE TABLE lease_devices(
  cloud TEXT NOT NULL,
  device_key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  device_index INTEGER NOT NULL,
  uuid TEXT NOT NULL,
  type TEXT NOT NULL,
  memory_gb INTEGER NOT NULL,
  PRIMARY KEY(cloud, device_key));
CREATE INDEX lease_devices_by_seq ON lease_devices(seq);
)sql";

// Version 2 added runs.remote_id (in schema_sql); version 3: where each built image is (one row
// per image digest and cloud).
constexpr const char* schema_v3_sql = R"sql(
CREATE TABLE image_locations(
  app TEXT NOT NULL,
  image TEXT NOT NULL,
  digest TEXT NOT NULL,
  cloud TEXT NOT NULL,
  registry TEXT NOT NULL,
  repository TEXT NOT NULL,
  pushed_at INTEGER NOT NULL,
  PRIMARY KEY(app, image, digest, cloud));
)sql";

// Version 4: the process group of each attempt's workload (a lost run keeps its GPUs while it lives).
constexpr const char* schema_v4_sql = R"sql(
ALTER TABLE attempts ADD COLUMN workload_pgid INTEGER;
ALTER TABLE attempts ADD COLUMN workload_start INTEGER;
)sql";

// Version 5: deployments are snapshots: the image digests per cloud, and a note (rollbacks).
constexpr const char* schema_v5_sql = R"sql(
ALTER TABLE deployments ADD COLUMN images_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE deployments ADD COLUMN note TEXT NOT NULL DEFAULT '';
)sql";
// Version 6: runs newest first without sorting them all (ps --all, @last on 100,000 runs).
constexpr const char* schema_v6_sql = "CREATE INDEX IF NOT EXISTS runs_by_created ON runs(created_at)";
// Version 7: whether a process holding the run's lock supervises it (NewRun::supervised). Older
// rows: only supervised runs were stored without a backend id (remote ones got theirs at launch).
constexpr const char* schema_v7_sql = R"sql(
ALTER TABLE runs ADD COLUMN supervised INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET supervised = 1 WHERE remote_id = '';
)sql";

constexpr const char* run_columns =
    "id, app, function, cloud, backend, status, status_reason, exit_code, gpus, attempt, created_at, started_at, "
    "ended_at, spec_json, log_dir, remote_id";

Run read_run(const Statement& row) {
  Run run;
  run.id = row.text(0);
  run.app = row.text(1);
  run.function = row.text(2);
  run.cloud = row.text(3);
  run.backend = row.text(4);
  run.status = parse_run_status(row.text(5)).value_or(RunStatus::lost);
  run.status_reason = row.text(6);
  run.exit_code = row.optional_int(7);
  run.gpus = row.text(8);
  run.attempt = row.integer(9);
  run.created_at = row.int64(10);
  run.started_at = row.optional_int64(11);
  run.ended_at = row.optional_int64(12);
  run.spec_json = row.text(13);
  run.log_dir = row.text(14);
  run.remote_id = row.text(15);
  return run;
}

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// True when `dir` is a setgid directory: a state dir an admin shares with a group (a host-wide
// lease dir, README "GPU servers over SSH"); what gpurun creates under it is group-writable.
bool shared_dir(const std::string& dir) {
  struct stat info {};
  return ::stat(dir.c_str(), &info) == 0 && S_ISDIR(info.st_mode) && (info.st_mode & S_ISGID) != 0;
}

// mkdir -p with mode 0700 for every directory it creates (02770 under a shared, setgid directory).
util::Result<void> make_dirs(const std::string& path) {
  std::string prefix;
  bool shared = false;
  for (std::size_t pos = 0; pos != std::string::npos;) {
    std::size_t next = path.find('/', pos + 1);
    prefix = path.substr(0, next);
    pos = next;
    if (prefix.empty() || prefix == "/") continue;
    const int made = ::mkdir(prefix.c_str(), shared ? 02770 : 0700);
    if (made == 0 && shared) ::chmod(prefix.c_str(), 02770);  // the umask may have taken group bits
    shared = shared_dir(prefix);
    if (made != 0 && errno != EEXIST) {
      return make_error(ExitCode::backend, "cannot create directory " + prefix + ": " + std::strerror(errno) +
                                               "; check the permissions or set GPURUN_STATE_DIR");
    }
  }
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return make_error(ExitCode::backend, "cannot use " + path + " as a directory: it is not one; remove it or set GPURUN_STATE_DIR");
  }
  return {};
}

std::string base36(std::uint64_t value, std::size_t width) {
  static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string text;
  do {
    text.insert(text.begin(), digits[value % 36]);
    value /= 36;
  } while (value != 0);
  if (text.size() < width) text.insert(0, width - text.size(), '0');
  return text;
}

// A run id for a run created at `unix_ms` (see Run::id).
std::string new_run_id(std::int64_t unix_ms) {
  // A fresh random_device each time: a cached engine would repeat itself in forked children.
  std::random_device entropy;
  std::uniform_int_distribution<std::uint64_t> random(0, 36ULL * 36 * 36 * 36 - 1);
  return "r" + base36(static_cast<std::uint64_t>(unix_ms), 8) + base36(random(entropy), 4);
}

util::Error run_not_found(std::string_view id) {
  return make_error(ExitCode::usage, "run '" + std::string(id) + "' not found; `gpurun ps --all` lists the runs");
}

void load_functions(Database& db, Deployment& deployment) {
  Statement query = db.prepare("SELECT function FROM deployment_functions WHERE app=?1 AND version=?2 ORDER BY function");
  query.bind(1, deployment.app).bind(2, deployment.version);
  while (query.step()) deployment.functions.push_back(query.text(0));
}

std::string images_to_json(const std::vector<ImageLocation>& images) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& i : images) {
    out.push_back({{"image", i.image}, {"digest", i.digest}, {"cloud", i.cloud}, {"registry", i.registry},
                   {"repository", i.repository}});
  }
  return out.dump();
}

std::vector<ImageLocation> images_from_json(const std::string& text) {
  std::vector<ImageLocation> images;
  auto parsed = nlohmann::json::parse(text, nullptr, false);
  if (!parsed.is_array()) return images;
  for (const auto& i : parsed) {
    if (!i.is_object()) continue;
    images.push_back({"", i.value("image", ""), i.value("digest", ""), i.value("cloud", ""), i.value("registry", ""),
                      i.value("repository", ""), 0});
  }
  return images;
}

std::vector<Deployment> read_deployments(Database& db, Statement& query) {
  std::vector<Deployment> result;
  while (query.step()) {
    Deployment d;
    d.app = query.text(0);
    d.version = query.integer(1);
    d.manifest_digest = query.text(2);
    d.manifest_path = query.text(3);
    d.manifest_dir = query.text(4);
    d.plan_json = query.text(5);
    d.created_at = query.int64(6);
    d.images = images_from_json(query.text(7));
    d.note = query.text(8);
    result.push_back(std::move(d));
  }
  for (Deployment& d : result) load_functions(db, d);
  return result;
}

constexpr const char* deployment_columns =
    "d.app, d.version, d.manifest_digest, d.manifest_path, d.manifest_dir, d.plan_json, d.created_at, d.images_json, "
    "d.note";
constexpr const char* newest_version_sql = "d.version = (SELECT MAX(version) FROM deployments WHERE app = d.app)";

Volume read_volume(const Statement& row) {
  return Volume{row.text(0), row.text(1), row.text(2), row.text(3), row.int64(4)};
}

}  // namespace

// --- Free functions ---

std::string run_dir(const std::string& state_dir, const std::string& run_id) { return state_dir + "/runs/" + run_id; }

std::string deployment_snapshot_path(const std::string& state_dir, const std::string& app, int version) {
  return fmt::format("{}/deployments/{}/v{}.yaml", state_dir, app, version);
}

std::string default_state_dir() {
  if (std::string dir = env_or_empty("GPURUN_STATE_DIR"); !dir.empty()) return dir;
  if (std::string dir = env_or_empty("XDG_STATE_HOME"); !dir.empty()) return dir + "/gpurun";
  std::string home = env_or_empty("HOME");
  if (home.empty()) {
    if (const passwd* entry = ::getpwuid(::getuid()); entry && entry->pw_dir) home = entry->pw_dir;
  }
  return home + "/.local/state/gpurun";
}

std::string format_iso8601(std::int64_t unix_ms) {
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  int millis = static_cast<int>(unix_ms % 1000);
  if (millis < 0) {
    millis += 1000;
    --seconds;
  }
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char buffer[40];
  std::size_t length = std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buffer + length, sizeof buffer - length, ".%03dZ", millis);
  return buffer;
}

std::string_view to_string(RunStatus status) {
  switch (status) {
    case RunStatus::queued: return "queued";
    case RunStatus::running: return "running";
    case RunStatus::succeeded: return "succeeded";
    case RunStatus::failed: return "failed";
    case RunStatus::cancelled: return "cancelled";
    case RunStatus::timeout: return "timeout";
    case RunStatus::lost: return "lost";
    case RunStatus::preempted: return "preempted";
  }
  return "lost";
}

std::optional<RunStatus> parse_run_status(std::string_view text) {
  for (RunStatus status : {RunStatus::queued, RunStatus::running, RunStatus::succeeded, RunStatus::failed,
                           RunStatus::cancelled, RunStatus::timeout, RunStatus::lost, RunStatus::preempted}) {
    if (to_string(status) == text) return status;
  }
  return std::nullopt;
}

bool is_terminal(RunStatus status) { return status != RunStatus::queued && status != RunStatus::running; }

// --- RunLock ---

util::Result<RunLock> RunLock::acquire(const std::string& state_dir, const std::string& run_id, bool inheritable) {
  const std::string dir = run_dir(state_dir, run_id);
  if (auto made = make_dirs(dir); !made) return made.error();
  std::string path = dir + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | (inheritable ? 0 : O_CLOEXEC), shared_dir(dir) ? 0660 : 0600);
  if (fd < 0) {
    return make_error(ExitCode::backend, "cannot open " + path + ": " + std::strerror(errno) + "; check the permissions");
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK) {
      return make_error(ExitCode::failure, "run " + run_id + ": another gpurun process supervises it (" + path +
                                               " is locked); wait for it or cancel the run");
    }
    return make_error(ExitCode::backend, "cannot lock " + path + ": " + std::strerror(error) + "; check the file system");
  }
  return RunLock(fd);
}

RunLock::RunLock(RunLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

RunLock& RunLock::operator=(RunLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

RunLock::~RunLock() { release(); }

void RunLock::set_inheritable(bool inheritable) {
  if (fd_ < 0) return;
  int flags = ::fcntl(fd_, F_GETFD);
  if (flags < 0) return;
  ::fcntl(fd_, F_SETFD, inheritable ? (flags & ~FD_CLOEXEC) : (flags | FD_CLOEXEC));
}

void RunLock::release() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool run_lock_held(const std::string& state_dir, const std::string& run_id) {
  std::string path = state_dir + "/runs/" + run_id + "/lock";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;  // unreadable: assume alive rather than declare it lost
  bool held = false;
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    ::flock(fd, LOCK_UN);
  } else {
    held = errno == EWOULDBLOCK;
  }
  ::close(fd);
  return held;
}

// --- StateStore: opening ---

StateStore::StateStore(std::string dir, std::unique_ptr<Database> db) : dir_(std::move(dir)), db_(std::move(db)) {}
StateStore::StateStore(StateStore&&) noexcept = default;
StateStore& StateStore::operator=(StateStore&&) noexcept = default;
StateStore::~StateStore() = default;

util::Result<StateStore> StateStore::open(const std::string& dir) {
  if (dir.empty()) {
    return make_error(ExitCode::backend, "cannot find gpurun's state directory: HOME is not set; set GPURUN_STATE_DIR");
  }
  if (auto made = make_dirs(dir + "/runs"); !made) return made.error();
  if (shared_dir(dir)) {
    // Every user of a shared state dir writes the database (SQLite gives -wal/-shm its mode).
    const std::string db_path = dir + "/state.db";
    const int fd = ::open(db_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0660);
    if (fd >= 0) {
      struct stat info {};
      if (::fstat(fd, &info) == 0 && info.st_uid == ::getuid()) ::fchmod(fd, 0660);
      ::close(fd);
    }
  }
  return guarded(dir, [&]() -> util::Result<StateStore> {
    auto db = std::make_unique<Database>(dir + "/state.db");
    sqlite3_busy_timeout(db->handle(), 5000);
    // Switching to WAL needs a moment of exclusive access; retry while another process opens too.
    for (int tries = 0;; ++tries) {
      try {
        Statement mode = db->prepare("PRAGMA journal_mode=WAL");
        mode.step();
        break;
      } catch (const SqliteError& error) {
        if (!error.transient() || tries >= 100) throw;  // only a lock held elsewhere passes
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    db->exec("PRAGMA synchronous=NORMAL");
    auto user_version = [&] {
      Statement query = db->prepare("PRAGMA user_version");
      query.step();
      return query.integer(0);
    };
    if (user_version() != schema_version) {
      Transaction tx(*db);
      int version = user_version();
      if (version > schema_version) {
        return make_error(ExitCode::backend, "state database " + dir + "/state.db has schema version " +
                                                 std::to_string(version) + " but this gpurun knows up to " +
                                                 std::to_string(schema_version) + "; upgrade gpurun");
      }
      if (version == 0) db->exec(schema_sql);
      if (version == 1) db->exec("ALTER TABLE runs ADD COLUMN remote_id TEXT NOT NULL DEFAULT ''");
      if (version < 3) db->exec(schema_v3_sql);
      if (version < 4) db->exec(schema_v4_sql);
      if (version < 5) db->exec(schema_v5_sql);
      if (version < 6) db->exec(schema_v6_sql);
      if (version < 7) db->exec(schema_v7_sql);
      db->exec(("PRAGMA user_version=" + std::to_string(schema_version)).c_str());
      tx.commit();
    }
    return StateStore(dir, std::move(db));
  });
}

// --- Runs ---

util::Result<CreatedRun> StateStore::create_run(const NewRun& spec, bool inheritable_lock) {
  return guarded(dir_, [&]() -> util::Result<CreatedRun> {
    for (int tries = 0;; ++tries) {
      Run run;
      run.id = new_run_id(clock_->now_unix_ms());
      auto lock = RunLock::acquire(dir_, run.id, inheritable_lock);
      if (!lock) {
        if (tries < 10 && run_lock_held(dir_, run.id)) continue;  // another process drew the same id
        return lock.error();
      }
      run.app = spec.app;
      run.function = spec.function;
      run.cloud = spec.cloud;
      run.backend = spec.backend;
      run.status_reason = spec.status_reason;
      run.gpus = spec.gpus;
      run.spec_json = spec.spec_json;
      run.log_dir = spec.log_dir.empty() ? dir_ + "/runs/" + run.id : spec.log_dir;
      run.created_at = clock_->now_unix_ms();
      Statement insert = db_->prepare(
          "INSERT OR IGNORE INTO runs(id, app, function, cloud, backend, status, status_reason, gpus, attempt, "
          "created_at, spec_json, log_dir, supervised) VALUES(?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, 1, ?8, ?9, ?10, ?11)");
      insert.bind(1, run.id).bind(2, run.app).bind(3, run.function).bind(4, run.cloud).bind(5, run.backend);
      insert.bind(6, run.status_reason).bind(7, run.gpus).bind(8, run.created_at).bind(9, run.spec_json);
      insert.bind(10, run.log_dir).bind(11, spec.supervised ? 1 : 0);
      insert.run();
      if (db_->changes() == 1) return CreatedRun{std::move(run), std::move(*lock)};
      if (tries > 10) throw SqliteError("cannot find a free run id");
    }
  });
}

util::Result<Run> StateStore::get_run(std::string_view id_or_prefix) {
  return guarded(dir_, [&]() -> util::Result<Run> {
    if (id_or_prefix.empty()) return run_not_found(id_or_prefix);
    {
      Statement exact = db_->prepare(std::string("SELECT ") + run_columns + " FROM runs WHERE id=?1");
      exact.bind(1, id_or_prefix);
      if (exact.step()) return read_run(exact);
    }
    Statement matches = db_->prepare(std::string("SELECT ") + run_columns +
                                     " FROM runs WHERE substr(id, 1, ?2) = ?1 ORDER BY created_at, rowid LIMIT 4");
    matches.bind(1, id_or_prefix).bind(2, static_cast<int>(id_or_prefix.size()));
    std::vector<Run> found;
    while (matches.step()) found.push_back(read_run(matches));
    if (found.empty()) return run_not_found(id_or_prefix);
    if (found.size() == 1) return found.front();
    Statement count = db_->prepare("SELECT COUNT(*) FROM runs WHERE substr(id, 1, ?2) = ?1");
    count.bind(1, id_or_prefix).bind(2, static_cast<int>(id_or_prefix.size()));
    count.step();
    std::int64_t total = count.int64(0);
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < found.size() && i < 3; ++i) ids.push_back(found[i].id);
    std::string list = total <= 3 ? util::join_list(ids, " and ")
                                  : util::join(ids, ", ") + " and " + std::to_string(total - 3) + " more";
    return make_error(ExitCode::usage, "run id prefix '" + std::string(id_or_prefix) + "' is ambiguous: it matches " +
                                           list + "; give more characters");
  });
}

util::Result<std::vector<Run>> StateStore::list_runs(bool all) {
  RunFilter filter;
  filter.all = all;
  return list_runs(filter);
}

namespace {

// The WHERE clause of `filter` (its values bound as ?1 app, ?2 status).
std::string run_filter_sql(const RunFilter& filter) {
  std::vector<std::string> terms;
  if (filter.status) {
    terms.emplace_back("status=?2");
  } else if (!filter.all) {
    terms.push_back(std::string("status IN ") + active_sql);
  }
  if (!filter.app.empty()) terms.emplace_back("app=?1");
  return terms.empty() ? std::string() : " WHERE " + util::join(terms, " AND ");
}

void bind_run_filter(Statement& statement, const RunFilter& filter) {
  if (!filter.app.empty()) statement.bind(1, filter.app);
  if (filter.status) statement.bind(2, to_string(*filter.status));
}

}  // namespace

util::Result<std::vector<Run>> StateStore::list_runs(const RunFilter& filter) {
  return guarded(dir_, [&]() -> util::Result<std::vector<Run>> {
    std::string sql = std::string("SELECT ") + run_columns + " FROM runs" + run_filter_sql(filter) +
                      " ORDER BY created_at DESC, rowid DESC";
    if (filter.limit) sql += " LIMIT " + std::to_string(*filter.limit);
    Statement query = db_->prepare(sql);
    bind_run_filter(query, filter);
    std::vector<Run> runs;
    while (query.step()) runs.push_back(read_run(query));
    return runs;
  });
}

util::Result<std::int64_t> StateStore::count_runs(const RunFilter& filter) {
  return guarded(dir_, [&]() -> util::Result<std::int64_t> {
    Statement query = db_->prepare("SELECT COUNT(*) FROM runs" + run_filter_sql(filter));
    bind_run_filter(query, filter);
    query.step();
    return query.int64(0);
  });
}

util::Result<bool> StateStore::update_status(const std::string& id, RunStatus status, const std::string& reason,
                                             std::optional<int> exit_code) {
  return guarded(dir_, [&]() -> util::Result<bool> {
    Transaction tx(*db_);
    Statement update = db_->prepare(std::string(R"sql(
      UPDATE runs SET status=?2, status_reason=?3, exit_code=COALESCE(?4, exit_code),
        started_at = CASE WHEN ?2='running' AND started_at IS NULL THEN ?5 ELSE started_at END,
        ended_at = CASE WHEN ?2 NOT IN ('queued','running') THEN ?5 ELSE ended_at END
      WHERE id=?1 AND status IN )sql") + active_sql);
    update.bind(1, id).bind(2, to_string(status)).bind(3, reason).bind(4, exit_code).bind(5, clock_->now_unix_ms());
    update.run();
    if (db_->changes() == 0) {
      Statement exists = db_->prepare("SELECT 1 FROM runs WHERE id=?1");
      exists.bind(1, id);
      if (!exists.step()) return run_not_found(id);
      return false;
    }
    if (is_terminal(status)) {
      Statement devices = db_->prepare("DELETE FROM lease_devices WHERE seq IN (SELECT seq FROM lease_tickets WHERE run_id=?1)");
      devices.bind(1, id).run();
      Statement tickets = db_->prepare("DELETE FROM lease_tickets WHERE run_id=?1");
      tickets.bind(1, id).run();
    }
    tx.commit();
    return true;
  });
}

util::Result<void> StateStore::set_remote_id(const std::string& id, const std::string& remote_id) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Statement update = db_->prepare("UPDATE runs SET remote_id=?2 WHERE id=?1");
    update.bind(1, id).bind(2, remote_id).run();
    if (db_->changes() == 0) return run_not_found(id);
    return {};
  });
}

util::Result<bool> StateStore::replace_remote_id(const std::string& id, const std::string& expected,
                                                const std::string& desired) {
  return guarded(dir_, [&]() -> util::Result<bool> {
    Statement update = db_->prepare("UPDATE runs SET remote_id=?3 WHERE id=?1 AND remote_id=?2");
    update.bind(1, id).bind(2, expected).bind(3, desired).run();
    return db_->changes() != 0;
  });
}

util::Result<void> StateStore::set_attempt(const std::string& id, int attempt) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Statement update = db_->prepare("UPDATE runs SET attempt=?2 WHERE id=?1");
    update.bind(1, id).bind(2, attempt).run();
    if (db_->changes() == 0) return run_not_found(id);
    return {};
  });
}

util::Result<void> StateStore::set_gpus(const std::string& id, const std::string& gpus) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Statement update = db_->prepare("UPDATE runs SET gpus=?2 WHERE id=?1");
    update.bind(1, id).bind(2, gpus).run();
    if (db_->changes() == 0) return run_not_found(id);
    return {};
  });
}

util::Result<void> StateStore::add_attempt(const std::string& run_id, int attempt) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Transaction tx(*db_);
    Statement update = db_->prepare("UPDATE runs SET attempt=?2 WHERE id=?1");
    update.bind(1, run_id).bind(2, attempt).run();
    if (db_->changes() == 0) return run_not_found(run_id);
    Statement insert = db_->prepare(
        "INSERT OR REPLACE INTO attempts(run_id, attempt, status, started_at) VALUES(?1, ?2, 'running', ?3)");
    insert.bind(1, run_id).bind(2, attempt).bind(3, clock_->now_unix_ms()).run();
    tx.commit();
    return {};
  });
}

util::Result<void> StateStore::finish_attempt(const std::string& run_id, int attempt, RunStatus status,
                                              std::optional<int> exit_code, const std::string& reason) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Statement update = db_->prepare(
        "UPDATE attempts SET status=?3, exit_code=?4, reason=?5, ended_at=?6 "
        "WHERE run_id=?1 AND attempt=?2 AND ended_at IS NULL");
    update.bind(1, run_id).bind(2, attempt).bind(3, to_string(status)).bind(4, exit_code).bind(5, reason);
    update.bind(6, clock_->now_unix_ms()).run();
    return {};
  });
}

util::Result<std::vector<Attempt>> StateStore::list_attempts(const std::string& run_id) {
  return guarded(dir_, [&]() -> util::Result<std::vector<Attempt>> {
    Statement query = db_->prepare(
        "SELECT run_id, attempt, status, exit_code, started_at, ended_at, reason FROM attempts WHERE run_id=?1 "
        "ORDER BY attempt");
    query.bind(1, run_id);
    std::vector<Attempt> attempts;
    while (query.step()) {
      attempts.push_back(Attempt{query.text(0), query.integer(1), parse_run_status(query.text(2)).value_or(RunStatus::lost),
                                 query.optional_int(3), query.int64(4), query.optional_int64(5), query.text(6)});
    }
    return attempts;
  });
}

util::Result<void> StateStore::set_attempt_workload(const std::string& run_id, int attempt,
                                                    const util::ProcessGroup& group) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Statement update = db_->prepare("UPDATE attempts SET workload_pgid=?3, workload_start=?4 WHERE run_id=?1 AND attempt=?2");
    update.bind(1, run_id).bind(2, attempt).bind(3, static_cast<std::int64_t>(group.pgid));
    update.bind(4, static_cast<std::int64_t>(group.leader_start)).run();
    return {};
  });
}

namespace {

// The workload group recorded for the run's latest attempt with `status`, when it still lives.
std::optional<util::ProcessGroup> live_workload(Database& db, const std::string& run_id, const char* status) {
  Statement query = db.prepare(
      "SELECT workload_pgid, workload_start FROM attempts WHERE run_id=?1 AND status=?2 AND workload_pgid IS NOT NULL "
      "ORDER BY attempt DESC LIMIT 1");
  query.bind(1, run_id).bind(2, status);
  if (!query.step()) return std::nullopt;
  const util::ProcessGroup group{static_cast<pid_t>(query.int64(0)), static_cast<std::uint64_t>(query.int64(1))};
  if (!util::process_group_alive(group)) return std::nullopt;
  return group;
}

}  // namespace

util::Result<std::optional<util::ProcessGroup>> StateStore::leftover_workload(const std::string& run_id) {
  return guarded(dir_, [&]() -> util::Result<std::optional<util::ProcessGroup>> {
    return live_workload(*db_, run_id, "lost");
  });
}

util::Result<std::vector<std::string>> StateStore::reconcile_lost() {
  return guarded(dir_, [&]() -> util::Result<std::vector<std::string>> {
    std::vector<std::string> candidates;
    {
      // Only supervised runs have a process holding their lock; remote runs are refreshed from their backend.
      Statement active = db_->prepare(std::string("SELECT id FROM runs WHERE supervised = 1 AND status IN ") + active_sql);
      while (active.step()) {
        std::string id = active.text(0);
        if (!run_lock_held(dir_, id)) candidates.push_back(std::move(id));
      }
    }
    std::vector<std::string> lost = mark_lost(candidates);
    drop_stale_tickets();
    return lost;
  });
}

std::vector<std::string> StateStore::mark_lost(const std::vector<std::string>& ids) {
  std::vector<std::string> lost;
  if (ids.empty()) return lost;
  Transaction tx(*db_);
  std::int64_t now = clock_->now_unix_ms();
  for (const std::string& id : ids) {
    std::string reason = lost_reason;
    if (auto group = live_workload(*db_, id, "running")) {
      reason += fmt::format("; its workload (process group {}) still runs and keeps its GPUs: 'gpurun cancel {}' stops it",
                            group->pgid, id);
    }
    Statement mark = db_->prepare(
        std::string("UPDATE runs SET status='lost', status_reason=?2, ended_at=?3 WHERE id=?1 AND status IN ") + active_sql);
    mark.bind(1, id).bind(2, reason).bind(3, now).run();
    if (db_->changes() == 0) continue;
    lost.push_back(id);
    Statement attempts = db_->prepare(
        "UPDATE attempts SET status='lost', reason=?2, ended_at=?3 WHERE run_id=?1 AND ended_at IS NULL");
    attempts.bind(1, id).bind(2, lost_reason).bind(3, now).run();
  }
  tx.commit();
  return lost;
}

void StateStore::drop_stale_tickets() {
  std::vector<std::int64_t> stale;
  {
    Statement tickets = db_->prepare(
        std::string("SELECT t.seq, t.run_id, COALESCE(r.status, '') FROM lease_tickets t LEFT JOIN runs r ON r.id = t.run_id "
                    "WHERE r.id IS NULL OR r.status NOT IN ") + active_sql);
    while (tickets.step()) {
      // A lost run's workload may outlive its supervisor: its devices stay leased until it is gone.
      if (tickets.text(2) == "lost" && live_workload(*db_, tickets.text(1), "lost")) continue;
      stale.push_back(tickets.int64(0));
    }
  }
  if (stale.empty()) return;
  Transaction tx(*db_);
  for (const std::int64_t seq : stale) {
    Statement devices = db_->prepare("DELETE FROM lease_devices WHERE seq=?1");
    devices.bind(1, seq).run();
    Statement tickets = db_->prepare("DELETE FROM lease_tickets WHERE seq=?1");
    tickets.bind(1, seq).run();
  }
  tx.commit();
}

// --- Deployments and volumes ---

util::Result<int> StateStore::record_deployment(const Deployment& deployment) {
  return guarded(dir_, [&]() -> util::Result<int> {
    Transaction tx(*db_);
    Statement next = db_->prepare("SELECT COALESCE(MAX(version), 0) + 1 FROM deployments WHERE app=?1");
    next.bind(1, deployment.app).step();
    int version = next.integer(0);
    Statement insert = db_->prepare(
        "INSERT INTO deployments(app, version, manifest_digest, manifest_path, manifest_dir, plan_json, created_at, "
        "images_json, note) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    insert.bind(1, deployment.app).bind(2, version).bind(3, deployment.manifest_digest);
    insert.bind(4, deployment.manifest_path).bind(5, deployment.manifest_dir).bind(6, deployment.plan_json);
    insert.bind(7, clock_->now_unix_ms()).bind(8, images_to_json(deployment.images)).bind(9, deployment.note).run();
    Statement function = db_->prepare("INSERT OR IGNORE INTO deployment_functions(app, version, function) VALUES(?1, ?2, ?3)");
    for (const std::string& name : deployment.functions) {
      function.reset();
      function.bind(1, deployment.app).bind(2, version).bind(3, name).run();
    }
    tx.commit();
    return version;
  });
}

util::Result<std::vector<Deployment>> StateStore::list_deployments(bool all_versions) {
  return guarded(dir_, [&]() -> util::Result<std::vector<Deployment>> {
    std::string sql = std::string("SELECT ") + deployment_columns + " FROM deployments d" +
                      (all_versions ? std::string(" ORDER BY d.app, d.version DESC")
                                    : std::string(" WHERE ") + newest_version_sql + " ORDER BY d.app");
    Statement query = db_->prepare(sql);
    return read_deployments(*db_, query);
  });
}

util::Result<std::optional<Deployment>> StateStore::latest_deployment(const std::string& app) {
  return guarded(dir_, [&]() -> util::Result<std::optional<Deployment>> {
    Statement query = db_->prepare(std::string("SELECT ") + deployment_columns +
                                   " FROM deployments d WHERE d.app=?1 ORDER BY d.version DESC LIMIT 1");
    query.bind(1, app);
    auto found = read_deployments(*db_, query);
    if (found.empty()) return std::optional<Deployment>();
    return std::optional<Deployment>(std::move(found.front()));
  });
}

util::Result<std::optional<Deployment>> StateStore::get_deployment(const std::string& app, int version) {
  return guarded(dir_, [&]() -> util::Result<std::optional<Deployment>> {
    Statement query = db_->prepare(std::string("SELECT ") + deployment_columns +
                                   " FROM deployments d WHERE d.app=?1 AND d.version=?2");
    query.bind(1, app).bind(2, version);
    auto found = read_deployments(*db_, query);
    if (found.empty()) return std::optional<Deployment>();
    return std::optional<Deployment>(std::move(found.front()));
  });
}

util::Result<std::vector<Deployment>> StateStore::app_history(const std::string& app) {
  return guarded(dir_, [&]() -> util::Result<std::vector<Deployment>> {
    Statement query = db_->prepare(std::string("SELECT ") + deployment_columns +
                                   " FROM deployments d WHERE d.app=?1 ORDER BY d.version");
    query.bind(1, app);
    return read_deployments(*db_, query);
  });
}

util::Result<int> StateStore::delete_app(const std::string& app) {
  return guarded(dir_, [&]() -> util::Result<int> {
    Transaction tx(*db_);
    Statement functions = db_->prepare("DELETE FROM deployment_functions WHERE app=?1");
    functions.bind(1, app).run();
    Statement versions = db_->prepare("DELETE FROM deployments WHERE app=?1");
    versions.bind(1, app).run();
    const int removed = db_->changes();
    tx.commit();
    return removed;
  });
}

util::Result<std::vector<Deployment>> StateStore::find_function(const std::string& function) {
  return guarded(dir_, [&]() -> util::Result<std::vector<Deployment>> {
    Statement query = db_->prepare(std::string("SELECT ") + deployment_columns +
                                   " FROM deployments d JOIN deployment_functions f ON f.app = d.app AND "
                                   "f.version = d.version WHERE f.function=?1 AND " +
                                   newest_version_sql + " ORDER BY d.app");
    query.bind(1, function);
    return read_deployments(*db_, query);
  });
}

util::Result<std::optional<Volume>> StateStore::get_volume(const std::string& app, const std::string& name) {
  return guarded(dir_, [&]() -> util::Result<std::optional<Volume>> {
    Statement query = db_->prepare("SELECT app, name, cloud, path, created_at FROM volumes WHERE app=?1 AND name=?2");
    query.bind(1, app).bind(2, name);
    if (!query.step()) return std::optional<Volume>();
    return std::optional<Volume>(read_volume(query));
  });
}

util::Result<Volume> StateStore::ensure_volume(const std::string& app, const std::string& name, const std::string& cloud,
                                               const std::string& path) {
  return guarded(dir_, [&]() -> util::Result<Volume> {
    Transaction tx(*db_);
    Statement insert = db_->prepare(
        "INSERT OR IGNORE INTO volumes(app, name, cloud, path, created_at) VALUES(?1, ?2, ?3, ?4, ?5)");
    insert.bind(1, app).bind(2, name).bind(3, cloud).bind(4, path).bind(5, clock_->now_unix_ms()).run();
    Statement fill = db_->prepare("UPDATE volumes SET path=?3 WHERE app=?1 AND name=?2 AND path='' AND cloud=?4");
    fill.bind(1, app).bind(2, name).bind(3, path).bind(4, cloud).run();
    Statement query = db_->prepare("SELECT app, name, cloud, path, created_at FROM volumes WHERE app=?1 AND name=?2");
    query.bind(1, app).bind(2, name).step();
    Volume volume = read_volume(query);
    tx.commit();
    return volume;
  });
}

util::Result<void> StateStore::forget_volume(const std::string& app, const std::string& name) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Statement remove = db_->prepare("DELETE FROM volumes WHERE app=?1 AND name=?2");
    remove.bind(1, app).bind(2, name).run();
    return {};
  });
}

util::Result<void> StateStore::forget_image_location(const ImageLocation& l) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Statement remove = db_->prepare("DELETE FROM image_locations WHERE app=?1 AND image=?2 AND digest=?3 AND cloud=?4");
    remove.bind(1, l.app).bind(2, l.image).bind(3, l.digest).bind(4, l.cloud).run();
    return {};
  });
}

util::Result<int> StateStore::delete_ended_runs(const std::vector<std::string>& ids) {
  return guarded(dir_, [&]() -> util::Result<int> {
    Transaction tx(*db_);
    int removed = 0;
    Statement run = db_->prepare(std::string("DELETE FROM runs WHERE id=?1 AND status NOT IN ") + active_sql);
    Statement attempts = db_->prepare("DELETE FROM attempts WHERE run_id=?1");
    for (const auto& id : ids) {
      run.reset();
      run.bind(1, id).run();
      if (db_->changes() == 0) continue;
      ++removed;
      attempts.reset();
      attempts.bind(1, id).run();
    }
    tx.commit();
    return removed;
  });
}

util::Result<std::vector<Volume>> StateStore::list_volumes(const std::string& app) {
  return guarded(dir_, [&]() -> util::Result<std::vector<Volume>> {
    Statement query = db_->prepare(
        "SELECT app, name, cloud, path, created_at FROM volumes WHERE ?1 = '' OR app = ?1 ORDER BY app, name");
    query.bind(1, app);
    std::vector<Volume> volumes;
    while (query.step()) volumes.push_back(read_volume(query));
    return volumes;
  });
}

// --- Images ---

util::Result<void> StateStore::record_image_locations(const std::vector<ImageLocation>& locations) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Transaction tx(*db_);
    Statement insert = db_->prepare(
        "INSERT OR REPLACE INTO image_locations(app, image, digest, cloud, registry, repository, pushed_at) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    for (const auto& l : locations) {
      insert.bind(1, l.app).bind(2, l.image).bind(3, l.digest).bind(4, l.cloud).bind(5, l.registry).bind(6, l.repository);
      insert.bind(7, l.pushed_at != 0 ? l.pushed_at : clock_->now_unix_ms()).run();
      insert.reset();
    }
    tx.commit();
    return {};
  });
}

util::Result<std::vector<ImageLocation>> StateStore::list_image_locations(const std::string& app) {
  return guarded(dir_, [&]() -> util::Result<std::vector<ImageLocation>> {
    Statement query = db_->prepare(
        "SELECT app, image, digest, cloud, registry, repository, pushed_at FROM image_locations "
        "WHERE ?1 = '' OR app = ?1 ORDER BY app, image, pushed_at DESC, cloud");
    query.bind(1, app);
    std::vector<ImageLocation> out;
    while (query.step()) {
      out.push_back({query.text(0), query.text(1), query.text(2), query.text(3), query.text(4), query.text(5), query.int64(6)});
    }
    return out;
  });
}

}  // namespace gpurun::cloud
