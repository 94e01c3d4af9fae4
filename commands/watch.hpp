#pragma once

#include <atomic>
#include <chrono>
#include <ostream>
#include <functional>
#include <optional>
#include <string>

#include "cloud/backend/backend.hpp"
#include "cloud/state/logs.hpp"
#include "cloud/state/state.hpp"
#include "util/result.hpp"

namespace gpurun::commands {

struct WatchOptions {
  cloud::RenderOptions render;
  bool follow = false;               // keep reading until the run ends
  std::optional<std::size_t> tail;   // start at the last N lines
  int out_fd = 1;
  int err_fd = 2;
  // Called about every 100 ms while following, with the run as last read (for status lines).
  std::function<void(const cloud::Run&)> on_poll;
  // Called before each batch of log lines is printed (e.g. to clear a live waiting line first).
  std::function<void()> before_output;
  const std::atomic<bool>* stop = nullptr;  // stop following (detach) when it turns true
  // The run's backend: where its log is and how its status is refreshed (null: local).
  cloud::Backend* backend = nullptr;
  // When a followed run ends without the log saying why (a local run's supervisor died, or could
  // not write its last line; a remote run that did not succeed), say so on err_fd, once: status,
  // reason, the run id (and for a lost local run what to do).
  bool explain_end = false;
};

// The live waiting line of a queued run on stderr ("gpurun: waiting for 1x T4 on local: all 2 in
// use, queued 12s"): rewritten in place on a terminal, else printed when its reason changes and
// every 30 s; cleared (on a terminal) once the run starts or prints.
class WaitingLine {
 public:
  WaitingLine(std::ostream& err, bool tty) : err_(err), tty_(tty) {}
  // Shows `run`'s waiting reason while it waits; clears the line otherwise.
  void update(const cloud::Run& run);
  void clear();

 private:
  std::ostream& err_;
  bool tty_;
  std::string shown_;
  std::chrono::steady_clock::time_point since_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_print_ = since_ - std::chrono::seconds(60);
};

// Marks runs whose supervisor died lost, then reads the local run `run_id`. An error when its
// supervisor is gone but the state cannot record that (e.g. on a full disk), so no one waits forever.
util::Result<cloud::Run> refresh_local_run(cloud::StateStore& store, const std::string& run_id);

// Prints a run's stored logs, and with `follow` everything it prints until it ends; returns the
// run as last read. Works while another process writes the log, and after the run ended.
util::Result<cloud::Run> watch_run(cloud::StateStore& store, const std::string& run_id, const WatchOptions& options);

}  // namespace gpurun::commands
