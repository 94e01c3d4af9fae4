// Streams generated output through the run log: `gpurun_log_stream_bench [MB] [OUTPUT] [ROUNDS]`.
// A child process prints MB megabytes of lines on a pipe (the workload); the parent's LogWriter
// stores them in a log file (the supervisor) while a thread follows the file and renders it to
// OUTPUT (default /dev/null; the `gpurun logs -f` side). The baseline copies the same pipe to OUTPUT
// with 128 KiB read/write calls, as cat does. Wall-clock times, best of ROUNDS (default 3).
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cloud/state/logs.hpp"

using namespace gpurun::cloud;
using Clock = std::chrono::steady_clock;

namespace {

std::string generate(std::size_t bytes) {
  std::string data;
  data.reserve(bytes + 256);
  unsigned state = 12345;
  for (long step = 0; data.size() < bytes; ++step) {
    state = state * 1103515245u + 12345u;
    data += "step " + std::to_string(step) + " loss=" + std::to_string(state % 100000) + " lr=3e-4 ";
    data.append(state >> 8 & 127, 'x');  // 0..127 more characters: lines of ~30 to ~160 bytes
    data += '\n';
  }
  return data;
}

// Forks a child that writes `data` to a pipe in 64 KiB writes; returns the read end.
int spawn_producer(const std::string& data, pid_t& child) {
  int fds[2];
  if (::pipe(fds) != 0) std::exit(1);
  child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    for (std::size_t at = 0; at < data.size();) {
      const ssize_t n = ::write(fds[1], data.data() + at, std::min<std::size_t>(65536, data.size() - at));
      if (n <= 0) ::_exit(1);
      at += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  return fds[0];
}

void reap(pid_t child) {
  int status = 0;
  ::waitpid(child, &status, 0);
}

// CPU seconds of this process (all threads) and its reaped children: the producer included.
double cpu_seconds() {
  double total = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage usage{};
    ::getrusage(who, &usage);
    total += static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
             static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  }
  return total;
}

struct Times {
  double wall = 1e9, cpu = 1e9;
};

// Runs `body` (which returns its wall seconds) and keeps the best wall and CPU times.
template <class Body>
void measure(Times& best, Body body) {
  const double cpu = cpu_seconds();
  const double wall = body();
  best.wall = std::min(best.wall, wall);
  best.cpu = std::min(best.cpu, cpu_seconds() - cpu);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double baseline(const std::string& data, int out) {
  const Clock::time_point start = Clock::now();
  pid_t child = 0;
  const int in = spawn_producer(data, child);
  std::vector<char> buffer(128 * 1024);
  ssize_t n = 0;
  while ((n = ::read(in, buffer.data(), buffer.size())) > 0) {
    if (::write(out, buffer.data(), static_cast<std::size_t>(n)) != n) std::exit(1);
  }
  ::close(in);
  reap(child);
  return seconds_since(start);
}

// The supervisor's loop: poll the pipe, write what arrives, flush when idle.
void supervise(int in, LogWriter& writer) {
  std::vector<char> buffer(64 * 1024);
  pollfd fd{in, POLLIN, 0};
  while (true) {
    if (::poll(&fd, 1, 50) == 0) {
      if (!writer.flush()) std::exit(1);
      continue;
    }
    const ssize_t n = ::read(in, buffer.data(), buffer.size());
    if (n <= 0) break;
    if (!writer.write(LogStream::out, buffer.data(), static_cast<std::size_t>(n))) std::exit(1);
  }
  if (!writer.close()) std::exit(1);
}

double pipeline(const std::string& data, int out, const std::string& log) {
  std::filesystem::remove(log);
  const Clock::time_point start = Clock::now();
  std::atomic<bool> ended{false};
  std::thread follower([&] {
    LogReader reader(log);
    LogRenderer renderer({}, out, out);
    auto followed = follow(reader, [&] { return ended.load(); },
                           [&](std::span<const LogRecord> batch) { return renderer.write(batch); });
    if (!followed || !renderer.finish()) std::exit(1);
  });
  pid_t child = 0;
  const int in = spawn_producer(data, child);
  auto writer = LogWriter::open(log);
  if (!writer) std::exit(1);
  supervise(in, *writer);
  ended = true;
  ::close(in);
  reap(child);
  follower.join();
  return seconds_since(start);
}

double writer_only(const std::string& data, const std::string& log) {
  std::filesystem::remove(log);
  const Clock::time_point start = Clock::now();
  pid_t child = 0;
  const int in = spawn_producer(data, child);
  auto writer = LogWriter::open(log);
  if (!writer) std::exit(1);
  supervise(in, *writer);
  ::close(in);
  reap(child);
  return seconds_since(start);
}

double reader_only(int out, const std::string& log) {
  const Clock::time_point start = Clock::now();
  LogReader reader(log);
  LogRenderer renderer({}, out, out);
  std::vector<LogRecord> batch;
  while (true) {
    auto got = reader.read(batch);
    if (!got) std::exit(1);
    if (*got == 0) break;
    if (!renderer.write(batch)) std::exit(1);
  }
  if (!renderer.finish()) std::exit(1);
  return seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t megabytes = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100;
  const std::string output = argc > 2 ? argv[2] : "/dev/null";
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  const std::string data = generate(megabytes * 1000 * 1000);
  const std::string log = (std::filesystem::temp_directory_path() / ("gpurun-log-bench-" + std::to_string(::getpid()))).string();
  const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) return 1;
  Times cat, pipe, writer, reader;
  for (int r = 0; r < rounds; ++r) {
    measure(cat, [&] { return baseline(data, out); });
    measure(pipe, [&] { return pipeline(data, out, log); });
    measure(writer, [&] { return writer_only(data, log); });
    measure(reader, [&] { return reader_only(out, log); });
  }
  const double log_size = static_cast<double>(std::filesystem::file_size(log));
  std::filesystem::remove(log);
  const double mb = static_cast<double>(data.size()) / 1e6;
  std::printf("%.0f MB of output in %zu-byte lines on average (log file %.0f MB), to %s, best of %d:\n", mb,
              data.size() / static_cast<std::size_t>(std::count(data.begin(), data.end(), '\n')), log_size / 1e6,
              output.c_str(), rounds);
  const auto row = [&](const char* what, const Times& t) {
    std::printf("  %-44s wall %6.3f s %6.0f MB/s   CPU %6.3f s %6.0f MB/CPU-s\n", what, t.wall, mb / t.wall, t.cpu,
                mb / t.cpu);
  };
  row("producer -> pipe -> read/write copy (cat)", cat);
  row("producer -> pipe -> writer -> file -> follow", pipe);
  row("producer -> pipe -> writer -> file", writer);
  row("file -> reader -> renderer", reader);
  std::printf("  pipeline / cat throughput: wall %.2f, CPU %.2f\n", cat.wall / pipe.wall, cat.cpu / pipe.cpu);
  return 0;
}
