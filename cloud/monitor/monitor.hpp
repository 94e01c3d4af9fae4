#pragma once

// One monitor per state directory: a background `gpurun monitor` process, started on demand (a
// file lock decides who starts it), that keeps every active run of every remote backend current
// with one Backend::refresh_many per cloud per interval (which resubmits retries and enforces
// timeouts), and exits when no remote run has been active for a while. Secret values reach it
// from the launcher over a 0600 unix socket and live only in its memory.

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "cloud/plan/run_spec.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// What a launcher hands the monitor for one run: the config file it was launched with (empty:
// the default one) and the values of its secrets.
struct MonitorHandover {
  std::string run_id;
  std::string config_path;
  SecretValues secrets;
};

// <state_dir>/monitor.sock and <state_dir>/monitor.lock.
std::string monitor_socket_path(const std::string& state_dir);
std::string monitor_lock_path(const std::string& state_dir);

// Makes sure the monitor of `state_dir` runs (starting `gpurun_binary monitor` detached when no
// process holds its lock) and hands it `handover`; returns once the monitor has it.
util::Result<void> hand_over_to_monitor(const std::string& state_dir, const MonitorHandover& handover,
                                        const std::string& gpurun_binary);

struct MonitorOptions {
  std::chrono::milliseconds interval{1000};   // between two refreshes of the same cloud
  std::chrono::milliseconds idle_exit{5000};  // exit after this long without an active remote run
};

// The monitor's body: takes the lock (returns 0 at once when another process holds it), serves
// the socket and refreshes until idle. `default_config` is the config file of runs handed over
// without one, and of runs it was never handed (found active in the state).
int run_monitor(const std::string& state_dir, const std::optional<std::string>& default_config,
                const MonitorOptions& options);

}  // namespace gpurun::cloud
