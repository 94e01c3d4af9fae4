#include "util/process_group.hpp"

#include <dirent.h>
#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "util/files.hpp"

namespace gpurun::util {

namespace {

// The fields of /proc/PID/stat from field 3 (state) on; empty when there is no such process.
// comm (field 2) may hold spaces and parentheses, so fields are counted from its last ')'.
std::vector<std::string> stat_fields(const std::string& pid) {
  int error_number = 0;
  const auto stat = read_file("/proc/" + pid + "/stat", error_number);
  std::vector<std::string> fields;
  if (!stat) return fields;
  const auto close = stat->rfind(')');
  if (close == std::string::npos) return fields;
  std::size_t pos = close + 1;
  while ((pos = stat->find_first_not_of(" \n", pos)) != std::string::npos) {
    const auto end = stat->find_first_of(" \n", pos);
    fields.push_back(stat->substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    pos = end;
  }
  return fields;
}

// True when a process of group `pgid` that is not a zombie exists (zombies wait to be reaped by
// whoever adopted them and run nothing); nullopt when /proc cannot be read.
std::optional<bool> live_member(pid_t pgid) {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return std::nullopt;
  const std::string group = std::to_string(pgid);
  bool found = false;
  while (const dirent* entry = ::readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    const auto fields = stat_fields(entry->d_name);
    // fields[0] = state (field 3), fields[2] = pgrp (field 5).
    if (fields.size() > 2 && fields[2] == group && fields[0] != "Z" && fields[0] != "X") {
      found = true;
      break;
    }
  }
  ::closedir(proc);
  return found;
}

}  // namespace

std::optional<std::uint64_t> process_start_ticks(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const auto fields = stat_fields(std::to_string(pid));
  if (fields.size() < 20) return std::nullopt;
  return std::strtoull(fields[19].c_str(), nullptr, 10);  // field 22
}

bool process_group_alive(const ProcessGroup& group) {
  if (group.pgid <= 1) return false;
  if (::kill(-group.pgid, 0) != 0 && errno == ESRCH) return false;
  // While a group exists its id is never given to a new process; so a process with that pid
  // started at another time means our group ended and the id was reused (with a new group).
  const auto leader = stat_fields(std::to_string(group.pgid));
  if (leader.size() >= 20) {
    if (std::strtoull(leader[19].c_str(), nullptr, 10) != group.leader_start) return false;
    if (leader[0] != "Z" && leader[2] == std::to_string(group.pgid)) return true;  // the leader itself runs
  }
  return live_member(group.pgid).value_or(true);
}

bool signal_process_group(const ProcessGroup& group, int sig) {
  if (!process_group_alive(group)) return false;
  return ::kill(-group.pgid, sig) == 0;
}

}  // namespace gpurun::util
