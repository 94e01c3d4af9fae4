#include "util/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

namespace gpurun::util {

namespace {

// Reads `fd` to its end into `text`; false with errno set on a read error.
bool read_all(int fd, std::string& text) {
  char buffer[65536];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    text.append(buffer, static_cast<std::size_t>(n));
  }
}

// Writes all of `bytes` to `fd`; false with errno set on a write error.
bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// A name beside `path` that no other process or thread picks: PATH.tmp-<pid>-<random>.
std::string temporary_name(const std::string& path) {
  std::random_device device;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".tmp-%d-%08x", static_cast<int>(::getpid()), device());
  return path + suffix;
}

}  // namespace

std::optional<std::string> read_file(const std::string& path, int& error_number) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error_number = errno;
    return std::nullopt;
  }
  std::string text;
  const bool ok = read_all(fd, text);
  error_number = ok ? 0 : errno;
  ::close(fd);
  if (!ok) return std::nullopt;
  return text;
}

Result<std::string> read_file(const std::string& path, ExitCode code) {
  int error_number = 0;
  auto text = read_file(path, error_number);
  if (!text) return Error{code, "cannot read " + path + ": " + std::strerror(error_number)};
  return std::move(*text);
}

Result<void> write_file_atomically(const std::string& path, std::string_view bytes) {
  const std::string temporary = temporary_name(path);
  const auto fail = [&](int error_number) {
    ::unlink(temporary.c_str());
    return Error{ExitCode::backend, "cannot write " + path + ": " + std::strerror(error_number)};
  };
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) return Error{ExitCode::backend, "cannot write " + path + ": " + std::strerror(errno)};
  const bool written = write_all(fd, bytes);
  const int write_error = errno;
  if (::close(fd) != 0 && written) return fail(errno);
  if (!written) return fail(write_error);
  if (::rename(temporary.c_str(), path.c_str()) != 0) return fail(errno);
  return {};
}

}  // namespace gpurun::util
