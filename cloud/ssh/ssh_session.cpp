#include "cloud/ssh/ssh_session.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fmt/format.h>

#include "cloud/exec/process.hpp"

extern char** environ;  // NOLINT

namespace gpurun::cloud::ssh_detail {

namespace {

// One output stream of ssh: bytes are held until the start marker has passed.
struct MarkedStream {
  bool started = false;
  std::string held;
  // The part of `chunk` after the marker (all of it once started).
  std::string feed(std::string_view chunk) {
    if (started) return std::string(chunk);
    held.append(chunk);
    const std::string marker = std::string(start_marker) + "\n";
    const auto at = held.find(marker);
    if (at == std::string::npos) return {};
    started = true;
    std::string rest = held.substr(at + marker.size());
    held.clear();
    return rest;
  }
};

// write(2) to a pipe whose reader may be gone: EPIPE instead of a SIGPIPE for the process.
ssize_t write_no_sigpipe(int fd, const char* data, std::size_t size) {
  sigset_t pipe_set;
  sigset_t old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  const ssize_t n = ::write(fd, data, size);
  const int saved = errno;
  if (n < 0 && saved == EPIPE) {
    const timespec zero{0, 0};
    sigtimedwait(&pipe_set, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  errno = saved;
  return n;
}

std::vector<std::string> current_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

// The state of one session's stdin: the script, then the input.
class InputPump {
 public:
  InputPump(const std::string& script, SessionInput input, SessionEnd& end) : pending_(script), input_(input), end_(end) {}
  // True while something is (or will be) written.
  bool open() const { return !done_; }
  // True when there are bytes to write now.
  bool ready(bool started) {
    if (done_) return false;
    if (!pending_.empty()) return true;
    if (!script_sent_) script_sent_ = true;
    if (input_.text == nullptr && input_.fd < 0) return finish();
    if (!started) return false;
    if (input_.text != nullptr) {
      if (text_sent_) return finish();
      pending_ = *input_.text;
      text_sent_ = true;
      end_.input_bytes += pending_.size();
      return !pending_.empty() || finish();
    }
    return refill();
  }
  // Writes what it can without blocking; false once the reader is gone.
  void write_some(int fd) {
    const ssize_t n = write_no_sigpipe(fd, pending_.data(), pending_.size());
    if (n > 0) pending_.erase(0, static_cast<std::size_t>(n));
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      pending_.clear();
      done_ = true;
    }
  }

 private:
  bool finish() {
    done_ = true;
    return false;
  }
  bool refill() {
    char buffer[1 << 16];
    const ssize_t n = ::read(input_.fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) return false;
      end_.input_error = std::strerror(errno);
      return finish();
    }
    if (n == 0) return finish();
    pending_.assign(buffer, static_cast<std::size_t>(n));
    end_.input_bytes += static_cast<std::uint64_t>(n);
    return true;
  }

  std::string pending_;
  SessionInput input_;
  SessionEnd& end_;
  bool script_sent_ = false;
  bool text_sent_ = false;
  bool done_ = false;
};

// Reads what is there; false at EOF or on an error.
bool read_into(int fd, std::string& out) {
  char buffer[1 << 16];
  const ssize_t n = ::read(fd, buffer, sizeof buffer);
  if (n > 0) out.assign(buffer, static_cast<std::size_t>(n));
  return n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN));
}

// stderr without waiting for EOF (a ControlPersist master started by this ssh holds it open).
void drain_nonblocking(int fd, MarkedStream& stream, std::string& err) {
  if (fd < 0) return;
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::string chunk;
  while (true) {
    chunk.clear();
    if (!read_into(fd, chunk) || chunk.empty()) break;
    err += stream.feed(chunk);
  }
}

}  // namespace

util::Result<Captured> capture(const std::vector<std::string>& argv) {
  auto child = ChildProcess::spawn(ProcessSpec{argv, current_environment(), "", false, {}});
  if (!child) {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("cannot run '{}': {}; install the OpenSSH client (Debian: openssh-client)", argv[0],
                                        child.error().message));
  }
  Captured result;
  std::string chunk;
  while (child->stdout_fd() >= 0) {
    chunk.clear();
    if (!read_into(child->stdout_fd(), chunk)) break;
    result.out += chunk;
  }
  child->close_stdout();
  result.exit_code = child->wait();
  MarkedStream all{true, {}};
  drain_nonblocking(child->stderr_fd(), all, result.err);
  return result;
}

util::Result<SessionEnd> run_session(const std::vector<std::string>& argv, const std::string& script, SessionInput input,
                                     const std::function<bool(std::string_view)>& on_out,
                                     const std::function<bool()>& keep_going) {
  ProcessSpec spec{argv, current_environment(), "", true, {}};
  auto child = ChildProcess::spawn(spec);
  if (!child) {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("cannot run '{}': {}; install the OpenSSH client (Debian: openssh-client)", argv[0],
                                        child.error().message));
  }
  ::fcntl(child->stdin_fd(), F_SETFL, ::fcntl(child->stdin_fd(), F_GETFL) | O_NONBLOCK);
  SessionEnd end;
  InputPump pump(script, input, end);
  MarkedStream out_stream;
  MarkedStream err_stream;
  bool stop_sent = false;
  bool term_sent = false;
  std::string chunk;
  while (child->stdout_fd() >= 0) {
    const bool want_write = child->stdin_fd() >= 0 && pump.ready(out_stream.started);
    if (child->stdin_fd() >= 0 && !pump.open()) child->close_stdin();
    pollfd fds[3] = {{child->stdout_fd(), POLLIN, 0}, {child->stderr_fd(), POLLIN, 0},
                     {want_write ? child->stdin_fd() : -1, POLLOUT, 0}};
    const int ready = ::poll(fds, 3, 100);
    if (ready < 0 && errno != EINTR) break;
    if ((fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) pump.write_some(child->stdin_fd());
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      chunk.clear();
      if (read_into(child->stderr_fd(), chunk)) {
        end.err += err_stream.feed(chunk);
      } else {
        child->close_stderr();
      }
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      chunk.clear();
      if (!read_into(child->stdout_fd(), chunk)) {
        child->close_stdout();
        break;
      }
      const std::string data = out_stream.feed(chunk);
      if (!data.empty() && !stop_sent && !on_out(data)) stop_sent = end.stopped = true;
    }
    if (!stop_sent && keep_going && !keep_going()) stop_sent = end.stopped = true;
    if (stop_sent && !term_sent) {
      ::kill(child->pid(), SIGTERM);  // the ssh client only: a master it started serves others
      term_sent = true;
    }
  }
  child->close_stdin();
  end.exit_code = child->wait();
  drain_nonblocking(child->stderr_fd(), err_stream, end.err);
  end.started = out_stream.started;
  if (!err_stream.started) end.err = err_stream.held + end.err;
  return end;
}

}  // namespace gpurun::cloud::ssh_detail
