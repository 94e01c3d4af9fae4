#include "cloud/exec/process.hpp"

#include <fcntl.h>
#include <signal.h>
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

}  // namespace

util::Result<ChildProcess> ChildProcess::spawn(const ProcessSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return util::make_error(util::ExitCode::usage, "empty command; give the function a command");
  }
  int out[2];
  int err[2];
  int status_pipe[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return util::make_error(util::ExitCode::backend, fmt::format("pipe: {}", std::strerror(errno)));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return util::make_error(util::ExitCode::backend, fmt::format("pipe: {}", std::strerror(errno)));
  }
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
    return util::make_error(util::ExitCode::backend, fmt::format("pipe: {}", std::strerror(errno)));
  }
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));  // NOLINT
  argv.push_back(nullptr);
  std::vector<char*> envp;
  std::string path_value = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : spec.env) {
    envp.push_back(const_cast<char*>(e.c_str()));  // NOLINT
    if (e.rfind("PATH=", 0) == 0) path_value = e.substr(5);
  }
  envp.push_back(nullptr);
  // Resolve argv[0] in the parent (no allocation after fork).
  std::vector<std::string> candidates;
  if (spec.argv[0].find('/') != std::string::npos) {
    candidates.push_back(spec.argv[0]);
  } else {
    std::size_t start = 0;
    while (start <= path_value.size()) {
      const auto colon = path_value.find(':', start);
      std::string dir = path_value.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      if (dir.empty()) dir.push_back('.');
      candidates.push_back(dir + "/" + spec.argv[0]);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }

  const pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {out[0], out[1], err[0], err[1], status_pipe[0], status_pipe[1]}) ::close(fd);
    return util::make_error(util::ExitCode::backend, fmt::format("fork: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT}) ::signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (!spec.cwd.empty() && ::chdir(spec.cwd.c_str()) != 0) {
      const int e = errno;
      [[maybe_unused]] auto n = ::write(status_pipe[1], &e, sizeof e);
      ::_exit(126);
    }
    int last_errno = ENOENT;
    for (const auto& candidate : candidates) {
      ::execve(candidate.c_str(), argv.data(), envp.data());
      if (errno != ENOENT || last_errno == ENOENT) last_errno = errno;
    }
    [[maybe_unused]] auto n = ::write(status_pipe[1], &last_errno, sizeof last_errno);
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(out[1]);
  ::close(err[1]);
  ::close(status_pipe[1]);
  int child_errno = 0;
  ssize_t got = 0;
  do {
    got = ::read(status_pipe[0], &child_errno, sizeof child_errno);
  } while (got < 0 && errno == EINTR);
  ::close(status_pipe[0]);
  ChildProcess child;
  child.pid_ = pid;
  child.out_fd_ = out[0];
  child.err_fd_ = err[0];
  if (got == static_cast<ssize_t>(sizeof child_errno)) {
    child.wait();
    if (!spec.cwd.empty() && child.exit_code_ == 126) {
      return util::make_error(util::ExitCode::backend,
                              fmt::format("cannot enter directory '{}': {}", spec.cwd, std::strerror(child_errno)));
    }
    return util::make_error(util::ExitCode::usage,
                            fmt::format("cannot run '{}': {}; check the function's command", spec.argv[0], std::strerror(child_errno)));
  }
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_), out_fd_(other.out_fd_), err_fd_(other.err_fd_), exit_code_(other.exit_code_) {
  other.pid_ = -1;
  other.out_fd_ = -1;
  other.err_fd_ = -1;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    close_fd(out_fd_);
    close_fd(err_fd_);
    pid_ = other.pid_;
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
  close_fd(out_fd_);
  close_fd(err_fd_);
  if (pid_ > 0 && !exit_code_) {
    signal_group(SIGKILL);
    wait();
  }
}

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

}  // namespace gpurun::cloud
