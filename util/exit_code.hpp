#pragma once

#include <string_view>

namespace gpurun::util {

// gpurun's documented exit codes (README "Exit codes"). The commands that return a workload's
// code (`run`, `wait`, `logs -f`) follow `docker run` and timeout(1): every failure of gpurun
// itself is 125, a command that cannot be executed 126, one that is not found 127, a timeout
// 124, a cancel 130; any other code is the workload's own (128+N when killed by signal N).
// Other commands keep 2 (usage/invalid) and 3 (unschedulable) apart.
enum class ExitCode : int {
  ok = 0,
  failure = 1,          // generic failure with no better code
  usage = 2,            // bad command line, invalid manifest or config
  unschedulable = 3,    // no cloud/GPU can ever satisfy the request
  timeout = 124,        // the run hit its timeout (or `wait --timeout` expired)
  backend = 125,        // gpurun or backend failure (unreachable endpoint, auth, I/O, sandbox setup)
  not_executable = 126, // the workload's command exists but cannot be executed
  not_found = 127,      // the workload's command is not found
  cancelled = 130,      // cancelled by the user
};

inline int to_int(ExitCode code) { return static_cast<int>(code); }

// What kind of failure a code names, as `--json` reports it: "usage", "invalid" (only when the
// caller knows a manifest or config was invalid), "unschedulable", "timeout", "backend",
// "not_executable", "not_found", "cancelled" or "internal".
std::string_view failure_kind(ExitCode code, bool invalid_input = false);

}  // namespace gpurun::util
