#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace gpurun::cloud::ssh_detail {

// The line each remote script prints first on stdout and on stderr: what came before it (text
// from the login shell's rc files) is dropped.
inline constexpr std::string_view start_marker = "GPURUN-SSH-START-5e0c";

// What a session sends after the script once the remote side has started: a string, or an fd
// read until EOF (input_fd >= 0), or nothing.
struct SessionInput {
  const std::string* text = nullptr;
  int fd = -1;
};

// How one ssh process ended.
struct SessionEnd {
  int exit_code = 0;
  bool started = false;       // the start marker arrived on stdout: the script ran
  bool stopped = false;       // ended by on_out returning false or keep_going saying stop
  std::string err;            // stderr after the marker (all of it when the script never ran)
  std::uint64_t input_bytes = 0;
  std::string input_error;    // reading the input fd failed (errno text)
};

// Starts `argv` (ssh), writes `script` to its stdin, then `input` once the script has started,
// and passes stdout after the start marker to `on_out` until EOF. `keep_going`, when set, is asked
// a few times a second. Never blocks on stderr after ssh exits (a ControlPersist master keeps it).
util::Result<SessionEnd> run_session(const std::vector<std::string>& argv, const std::string& script, SessionInput input,
                                     const std::function<bool(std::string_view)>& on_out,
                                     const std::function<bool()>& keep_going);

// Runs `argv` with stdin from /dev/null; its exit code, stdout and stderr (a local ssh command
// such as `ssh -G` or `ssh -O exit`).
struct Captured {
  int exit_code = 0;
  std::string out;
  std::string err;
};
util::Result<Captured> capture(const std::vector<std::string>& argv);

}  // namespace gpurun::cloud::ssh_detail
