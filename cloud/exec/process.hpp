#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "util/result.hpp"

namespace gpurun::cloud {

// What to start: argv[0] is looked up in PATH (of `env`), `env` is the whole environment.
struct ProcessSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=VALUE"
  std::string cwd;               // empty = inherit
  bool stdin_pipe = false;       // true: stdin is a pipe the parent writes (stdin_fd), else /dev/null
  // Called in the parent once the child exists (its pid is its process group id) and before it
  // runs anything, e.g. to record the group; an error kills the child and is spawn's error.
  std::function<util::Result<void>(pid_t)> on_forked;
};

// A child in its own process group with stdout and stderr on pipes and stdin from /dev/null (or a
// pipe, see ProcessSpec::stdin_pipe). The child gets SIGKILL when the thread that started it dies
// (PR_SET_PDEATHSIG), so a killed supervisor leaves no workload entrypoint behind.
class ChildProcess {
 public:
  // Starts the process. A program that cannot be executed is an Error naming it and errno's text.
  static util::Result<ChildProcess> spawn(const ProcessSpec& spec);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  int stdout_fd() const { return out_fd_; }  // -1 once closed
  int stderr_fd() const { return err_fd_; }
  int stdin_fd() const { return in_fd_; }  // -1 without ProcessSpec::stdin_pipe, or once closed
  // Closes the write end of the child's stdin (the child reads EOF).
  void close_stdin();
  void close_stdout();
  void close_stderr();
  // Waits up to `timeout_ms` for output on stdout/stderr, hands each chunk read to `sink` (with
  // whether it came from stderr) and closes a pipe at its end. True when it read anything.
  bool pump_output(std::vector<char>& buffer, int timeout_ms,
                   const std::function<void(bool from_stderr, const char* data, std::size_t size)>& sink);
  // Sends `sig` to the whole process group (ignored once the group is gone).
  void signal_group(int sig) const;
  // The exit code once the process ended (128+N when killed by signal N), without blocking.
  std::optional<int> try_wait();
  // Blocks until the process ends; returns its exit code.
  int wait();

 private:
  ChildProcess() = default;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  int in_fd_ = -1;
  std::optional<int> exit_code_;
};

// Converts a waitpid status into gpurun's exit code convention (128+N for signal N).
int exit_code_from_status(int status);

// Runs `body` in a process detached from this one and its session (setsid, forked twice, so it is
// nobody's child): stdin /dev/null, stdout and stderr appended to `log_path` (0600), default signals
// and mask; it exits with body's result. Returns once it is started; an error carries fork's errno text.
util::Result<void> start_detached(const std::string& log_path, const std::function<int()>& body);

}  // namespace gpurun::cloud
