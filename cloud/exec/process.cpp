#include "cloud/exec/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

namespace gpurun::cloud {

int exit_code_from_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 125;
}

namespace {

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// The pipes of a spawn: the child's stdout and stderr, the status pipe on which a child that
// cannot exec writes its errno (close-on-exec: a successful exec closes it, so the parent reads
// EOF), and the go pipe on which the child waits for the parent's on_forked.
struct SpawnPipes {
  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  int status[2] = {-1, -1};
  int in[2] = {-1, -1};
  int go[2] = {-1, -1};
  void close_all() {
    for (int* fd : {&out[0], &out[1], &err[0], &err[1], &status[0], &status[1], &in[0], &in[1], &go[0], &go[1]}) {
      close_fd(*fd);
    }
  }
};

util::Result<SpawnPipes> make_pipes(bool stdin_pipe) {
  SpawnPipes pipes;
  for (int* pipe : {pipes.out, pipes.err, pipes.status, pipes.in, pipes.go}) {
    if (pipe == pipes.in && !stdin_pipe) continue;
    if (::pipe2(pipe, O_CLOEXEC) != 0) {
      const int error = errno;
      pipes.close_all();
      return util::make_error(util::ExitCode::backend, fmt::format("pipe: {}", std::strerror(error)));
    }
  }
  return pipes;
}

// The items as the NULL-terminated array execve takes; valid while `items` lives.
std::vector<char*> c_strings(const std::vector<std::string>& items) {
  std::vector<char*> pointers;
  for (const auto& item : items) pointers.push_back(const_cast<char*>(item.c_str()));  // NOLINT
  pointers.push_back(nullptr);
  return pointers;
}

// Where to look for argv[0]: itself when it holds a '/', else in each directory of the spec's
// PATH (or a default). Resolved in the parent: the child must not allocate after fork().
std::vector<std::string> exec_candidates(const ProcessSpec& spec) {
  const std::string& program = spec.argv[0];
  if (program.find('/') != std::string::npos) return {program};
  std::string path_value = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : spec.env) {
    if (e.rfind("PATH=", 0) == 0) path_value = e.substr(5);
  }
  std::vector<std::string> candidates;
  std::size_t start = 0;
  while (start <= path_value.size()) {
    const auto colon = path_value.find(':', start);
    std::string dir = path_value.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (dir.empty()) dir.push_back('.');
    candidates.push_back(dir + "/" + program);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return candidates;
}

// In the forked child: its own process group, SIGKILL when the parent dies (gone already: exit),
// then it waits for the parent's go (EOF: the parent died or gave up, exit 125).
void bind_to_parent(pid_t parent, const SpawnPipes& pipes) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(125);
  ::close(pipes.go[1]);
  char go = 0;
  ssize_t got = 0;
  do {
    got = ::read(pipes.go[0], &go, 1);
  } while (got < 0 && errno == EINTR);
  if (got != 1) ::_exit(125);
}

// In the forked child: bound to its parent (bind_to_parent), default signals, stdin from
// /dev/null or its pipe, the pipes as stdout/stderr, the spec's directory, then exec. On failure writes errno
// to the status pipe and exits 126 (directory) or 127 (program). Only async-signal-safe calls.
[[noreturn]] void exec_child(pid_t parent, const ProcessSpec& spec, const SpawnPipes& pipes,
                             const std::vector<std::string>& candidates, char* const* argv, char* const* envp) {
  bind_to_parent(parent, pipes);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT}) ::signal(s, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  const int input = pipes.in[0] >= 0 ? pipes.in[0] : ::open("/dev/null", O_RDONLY);
  if (input >= 0) ::dup2(input, 0);
  ::dup2(pipes.out[1], 1);
  ::dup2(pipes.err[1], 2);
  if (!spec.cwd.empty() && ::chdir(spec.cwd.c_str()) != 0) {
    const int e = errno;
    [[maybe_unused]] auto n = ::write(pipes.status[1], &e, sizeof e);
    ::_exit(126);
  }
  int last_errno = ENOENT;
  for (const auto& candidate : candidates) {
    ::execve(candidate.c_str(), argv, envp);
    if (errno != ENOENT || last_errno == ENOENT) last_errno = errno;
  }
  [[maybe_unused]] auto n = ::write(pipes.status[1], &last_errno, sizeof last_errno);
  ::_exit(127);
}

// The errno a child that could not exec wrote to the status pipe; nullopt when it exec'ed.
std::optional<int> read_child_errno(int status_fd) {
  int child_errno = 0;
  ssize_t got = 0;
  do {
    got = ::read(status_fd, &child_errno, sizeof child_errno);
  } while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(sizeof child_errno)) return std::nullopt;
  return child_errno;
}

}  // namespace

util::Result<ChildProcess> ChildProcess::spawn(const ProcessSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return util::make_error(util::ExitCode::usage, "empty command; give the function a command");
  }
  auto pipes = make_pipes(spec.stdin_pipe);
  if (!pipes) return pipes.error();
  const std::vector<char*> argv = c_strings(spec.argv);
  const std::vector<char*> envp = c_strings(spec.env);
  const std::vector<std::string> candidates = exec_candidates(spec);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int fork_errno = errno;
    pipes->close_all();
    return util::make_error(util::ExitCode::backend, fmt::format("fork: {}", std::strerror(fork_errno)));
  }
  if (pid == 0) exec_child(parent, spec, *pipes, candidates, argv.data(), envp.data());
  ::setpgid(pid, pid);
  for (int* fd : {&pipes->out[1], &pipes->err[1], &pipes->status[1], &pipes->go[0], &pipes->in[0]}) close_fd(*fd);
  if (auto forked = spec.on_forked ? spec.on_forked(pid) : util::Result<void>{}; !forked) {
    ::kill(-pid, SIGKILL);
    pipes->close_all();
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return forked.error();
  }
  const char go = 1;
  [[maybe_unused]] const auto sent = ::write(pipes->go[1], &go, 1);
  close_fd(pipes->go[1]);
  const std::optional<int> child_errno = read_child_errno(pipes->status[0]);
  close_fd(pipes->status[0]);
  ChildProcess child;
  child.pid_ = pid;
  child.out_fd_ = pipes->out[0];
  child.err_fd_ = pipes->err[0];
  child.in_fd_ = pipes->in[1];
  if (child_errno) {
    child.wait();
    if (!spec.cwd.empty() && child.exit_code_ == 126) {
      return util::make_error(util::ExitCode::backend,
                              fmt::format("cannot enter directory '{}': {}", spec.cwd, std::strerror(*child_errno)));
    }
    // As a shell does: a command that is not there is 127, one that cannot be executed 126.
    return util::make_error(*child_errno == ENOENT ? util::ExitCode::not_found : util::ExitCode::not_executable,
                            fmt::format("cannot run '{}': {}; check the function's command", spec.argv[0], std::strerror(*child_errno)));
  }
  return child;
}

bool ChildProcess::pump_output(std::vector<char>& buffer, int timeout_ms,
                               const std::function<void(bool from_stderr, const char* data, std::size_t size)>& sink) {
  pollfd fds[2];
  nfds_t n = 0;
  const int out_fd = out_fd_;
  const int err_fd = err_fd_;
  if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
  if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
  const int ready = n > 0 ? ::poll(fds, n, timeout_ms) : (::usleep(1000), 0);
  bool read_any = false;
  for (nfds_t i = 0; ready > 0 && i < n; ++i) {
    if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    const ssize_t got = ::read(fds[i].fd, buffer.data(), buffer.size());
    if (got > 0) {
      read_any = true;
      sink(fds[i].fd == err_fd, buffer.data(), static_cast<std::size_t>(got));
    } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
      if (fds[i].fd == out_fd) {
        close_stdout();
      } else {
        close_stderr();
      }
    }
  }
  return read_any;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_), out_fd_(other.out_fd_), err_fd_(other.err_fd_), in_fd_(other.in_fd_), exit_code_(other.exit_code_) {
  other.in_fd_ = -1;
  other.pid_ = -1;
  other.out_fd_ = -1;
  other.err_fd_ = -1;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    close_fd(out_fd_);
    close_fd(err_fd_);
    close_fd(in_fd_);
    pid_ = other.pid_;
    in_fd_ = other.in_fd_;
    other.in_fd_ = -1;
    out_fd_ = other.out_fd_;
    err_fd_ = other.err_fd_;
    exit_code_ = other.exit_code_;
    other.pid_ = -1;
    other.out_fd_ = -1;
    other.err_fd_ = -1;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  close_fd(in_fd_);
  close_fd(out_fd_);
  close_fd(err_fd_);
  if (pid_ > 0 && !exit_code_) {
    signal_group(SIGKILL);
    wait();
  }
}

void ChildProcess::close_stdin() { close_fd(in_fd_); }
void ChildProcess::close_stdout() { close_fd(out_fd_); }
void ChildProcess::close_stderr() { close_fd(err_fd_); }

void ChildProcess::signal_group(int sig) const {
  if (pid_ > 0) ::kill(-pid_, sig);
}

std::optional<int> ChildProcess::try_wait() {
  if (exit_code_ || pid_ <= 0) return exit_code_;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) exit_code_ = exit_code_from_status(status);
  return exit_code_;
}

int ChildProcess::wait() {
  if (exit_code_) return *exit_code_;
  int status = 0;
  pid_t r = 0;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  exit_code_ = r == pid_ ? exit_code_from_status(status) : 125;
  return *exit_code_;
}

util::Result<void> start_detached(const std::string& log_path, const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid < 0) return util::make_error(util::ExitCode::backend, fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
    }
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) ::signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::_exit(body());
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {};
}

}  // namespace gpurun::cloud
