#pragma once

// Telling whether a process group that gpurun started is still there, safely although pids and
// process group ids are reused: a group is named by its id and its leader's start time.

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace gpurun::util {

// A process group: its id (the leader's pid) and the leader's start time (clock ticks after boot,
// field 22 of /proc/PID/stat), which tells the leader from a later process that got its pid.
struct ProcessGroup {
  pid_t pgid = 0;
  std::uint64_t leader_start = 0;
};

// The start time of process `pid` (clock ticks after boot), or nullopt when there is no such process.
std::optional<std::uint64_t> process_start_ticks(pid_t pid);

// True while some process of `group` lives: the group exists, its id is not now a different
// process's (the leader may have exited while its children still run) and a member of it is not
// a zombie (orphans wait for whoever adopted them to reap them). Unsure means alive.
bool process_group_alive(const ProcessGroup& group);

// Sends `sig` to every process of `group` when it is alive (process_group_alive); true when sent.
bool signal_process_group(const ProcessGroup& group, int sig);

}  // namespace gpurun::util
