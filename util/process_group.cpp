#include "util/process_group.hpp"

#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "util/files.hpp"

namespace gpurun::util {

std::optional<std::uint64_t> process_start_ticks(pid_t pid) {
  int error_number = 0;
  const auto stat = read_file("/proc/" + std::to_string(pid) + "/stat", error_number);
  if (!stat) return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so count from the last ')'.
  const auto close = stat->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::size_t pos = close + 1;
  for (int field = 3; field <= 22; ++field) {
    pos = stat->find_first_not_of(' ', pos);
    if (pos == std::string::npos) return std::nullopt;
    if (field == 22) return std::strtoull(stat->c_str() + pos, nullptr, 10);
    pos = stat->find(' ', pos);
    if (pos == std::string::npos) return std::nullopt;
  }
  return std::nullopt;
}

bool process_group_alive(const ProcessGroup& group) {
  if (group.pgid <= 1) return false;
  if (::kill(-group.pgid, 0) != 0 && errno == ESRCH) return false;
  // While a group exists its id is never given to a new process; so a process with that pid
  // started at another time means our group ended and the id was reused (with a new group).
  const auto start = process_start_ticks(group.pgid);
  return !start || *start == group.leader_start;
}

bool signal_process_group(const ProcessGroup& group, int sig) {
  if (!process_group_alive(group)) return false;
  return ::kill(-group.pgid, sig) == 0;
}

}  // namespace gpurun::util
