#pragma once

// Private to cloud/state*.cpp and cloud/state/leases.cpp: a minimal RAII layer over SQLite's C API.
// Failures throw SqliteError; the public StateStore methods turn them into util::Error.

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace gpurun::cloud::detail {

class SqliteError : public std::runtime_error {
 public:
  // `code` is SQLite's result code (extended codes are reduced to their primary code).
  explicit SqliteError(const std::string& message, int code = SQLITE_ERROR)
      : std::runtime_error(message), code_(code & 0xff) {}
  int code() const { return code_; }
  // Another connection holds a lock: trying again later may succeed.
  bool transient() const { return code_ == SQLITE_BUSY || code_ == SQLITE_LOCKED; }
  // The file is damaged or is no SQLite database at all: trying again never helps.
  bool corrupt() const { return code_ == SQLITE_CORRUPT || code_ == SQLITE_NOTADB; }

 private:
  int code_;
};

class Statement {
 public:
  Statement(sqlite3* db, std::string_view sql) : db_(db) {
    if (int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr); rc != SQLITE_OK) {
      throw SqliteError(sqlite3_errmsg(db), rc);
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binds parameters 1..N in order; returns *this for chaining.
  Statement& bind(int index, std::int64_t value) {
    return check_bind(sqlite3_bind_int64(stmt_, index, value));
  }
  Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
  Statement& bind(int index, std::string_view value) {
    return check_bind(sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT));
  }
  Statement& bind(int index, const std::string& value) { return bind(index, std::string_view(value)); }
  Statement& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
  Statement& bind(int index, std::nullopt_t) { return check_bind(sqlite3_bind_null(stmt_, index)); }
  template <class T>
  Statement& bind(int index, const std::optional<T>& value) {
    return value ? bind(index, *value) : bind(index, std::nullopt);
  }

  // Advances; true when a row is available.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw SqliteError(sqlite3_errmsg(db_), rc);
  }
  // Runs a statement that returns no rows (or ignores them).
  void run() {
    while (step()) {
    }
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  bool is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  std::int64_t int64(int column) const { return sqlite3_column_int64(stmt_, column); }
  int integer(int column) const { return sqlite3_column_int(stmt_, column); }
  std::string text(int column) const {
    const unsigned char* data = sqlite3_column_text(stmt_, column);
    return data ? std::string(reinterpret_cast<const char*>(data), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)))
                : std::string();
  }
  std::optional<std::int64_t> optional_int64(int column) const {
    return is_null(column) ? std::nullopt : std::optional<std::int64_t>(int64(column));
  }
  std::optional<int> optional_int(int column) const {
    return is_null(column) ? std::nullopt : std::optional<int>(integer(column));
  }

 private:
  Statement& check_bind(int rc) {
    if (rc != SQLITE_OK) throw SqliteError(sqlite3_errmsg(db_), rc);
    return *this;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class Database {
 public:
  explicit Database(const std::string& path) {
    int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      throw SqliteError(message, rc);
    }
    // Many short-lived processes share this database: keep the WAL file between connections and
    // leave checkpoints to SQLite's automatic ones, so that closing or opening a connection does
    // not fsync (a run starts and ends faster).
    int persist = 1;
    sqlite3_file_control(db_, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  }
  ~Database() { sqlite3_close_v2(db_); }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  sqlite3* handle() const { return db_; }
  void exec(const char* sql) {
    char* error = nullptr;
    if (int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error); rc != SQLITE_OK) {
      std::string message = error ? error : sqlite3_errmsg(db_);
      sqlite3_free(error);
      throw SqliteError(message, rc);
    }
  }
  Statement prepare(std::string_view sql) { return Statement(db_, sql); }
  int changes() const { return sqlite3_changes(db_); }

 private:
  sqlite3* db_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back when destroyed uncommitted.
class Transaction {
 public:
  explicit Transaction(Database& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    db_.exec("COMMIT");
    done_ = true;
  }

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace gpurun::cloud::detail

#include "util/result.hpp"

namespace gpurun::cloud::detail {

// The error for a state.db that is damaged or no database: what to do about it, at once.
inline util::Error corrupt_database_error(const std::string& state_dir, const SqliteError& error) {
  const std::string path = state_dir + "/state.db";
  return util::make_error(util::ExitCode::backend,
                          "state database " + path + " is corrupt (" + error.what() +
                              "); move it away with its -wal and -shm files and gpurun makes a new one (the runs "
                              "recorded in it are lost): mkdir " + state_dir + "/corrupt && mv " + path + "* " +
                              state_dir + "/corrupt/");
}

// Runs `body` (returning util::Result<T>), turning SQLite failures into a backend error.
template <class F>
auto guarded(const std::string& state_dir, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const SqliteError& error) {
    if (error.corrupt()) return corrupt_database_error(state_dir, error);
    return util::make_error(util::ExitCode::backend,
                            "state database " + state_dir + "/state.db: " + error.what() +
                                "; check that the directory is writable and the disk is not full");
  }
}

}  // namespace gpurun::cloud::detail
