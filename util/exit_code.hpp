#pragma once

namespace gpurun::util {

// gpurun's documented exit codes (README "Exit codes"). A run's own exit code passes through
// `run`/`wait` unchanged (128+N when killed by signal N).
enum class ExitCode : int {
  ok = 0,
  failure = 1,         // generic failure with no better code
  usage = 2,           // bad command line, invalid manifest or config
  unschedulable = 3,   // no cloud/GPU can ever satisfy the request
  timeout = 124,       // the run hit its timeout
  backend = 125,       // gpurun or backend failure (unreachable endpoint, auth, I/O)
  cancelled = 130,     // cancelled by the user
};

inline int to_int(ExitCode code) { return static_cast<int>(code); }

}  // namespace gpurun::util
