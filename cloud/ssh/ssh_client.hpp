#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cloud/ssh/ssh_config.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// How the client shares connections (README "SSH settings").
struct SshClientOptions {
  std::string control_dir;             // empty: /tmp/gpurun-<uid> (0700, owner-checked)
  int control_persist_seconds = 300;   // an idle shared connection ends after this long
  std::string ssh_program = "ssh";     // the OpenSSH client
};

// Work for the remote /bin/sh. It travels on ssh's stdin, never on a command line (local or
// remote), so values in `env` (secrets included) are not visible in `ps`.
struct RemoteScript {
  std::string body;                                      // POSIX sh code; its status is the result
  std::vector<std::pair<std::string, std::string>> env;  // exported (quoted) before the body runs
  std::optional<std::string> input;                      // what the body reads on its stdin
};

// What a finished remote script produced. Text an rc file printed before it ran is dropped.
struct RemoteResult {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// How to follow a growing remote file (logs).
struct FollowOptions {
  std::uint64_t offset = 0;  // bytes already seen: following starts after them
  // Receives whole lines (the last part without a newline only when following ends); false stops.
  std::function<bool(std::string_view)> on_data;
  // Asked a few times a second; false ends following after a final read of what is left.
  std::function<bool()> keep_going;
  int max_reconnects = 5;    // dropped connections in a row before giving up
};

// The OpenSSH client for one host: batch mode, a shared connection (ControlMaster), every remote
// command run as `exec /bin/sh -s` with the script on stdin.
class SshClient {
 public:
  // A client for `settings` (host required). Asks `ssh -G` once whether the user's config already
  // names a ControlPath (reused as is), else shares connections under options.control_dir.
  static util::Result<SshClient> open(SshSettings settings, SshClientOptions options = {});

  const SshSettings& settings() const { return settings_; }
  // The ssh argv for one remote command (the last element is the remote command).
  std::vector<std::string> argv() const;

  // Runs `script` on the host and returns its exit status and output unchanged. ssh's own failures
  // (exit 255 before the script ran, or a dropped connection) are errors with exit code backend.
  util::Result<RemoteResult> run(const RemoteScript& script) const;
  // As run(), with the script's stdin read from `input_fd` until EOF (script.input must be unset).
  util::Result<RemoteResult> run(const RemoteScript& script, int input_fd) const;
  // The bytes of remote `path` after its first `offset` bytes; nullopt when the file is missing.
  util::Result<std::optional<std::string>> read_file(const std::string& path, std::uint64_t offset = 0) const;
  // Follows remote `path` (which may not exist yet) from options.offset, reconnecting after a
  // dropped connection without losing or repeating a byte. Returns the offset reached.
  util::Result<std::uint64_t> follow_file(const std::string& path, const FollowOptions& options) const;
  // Writes everything readable from `fd` (until EOF) to remote `path` (created with its parents,
  // replaced atomically). Returns the bytes sent.
  util::Result<std::uint64_t> write_file(const std::string& path, int fd) const;
  // Ends the shared connection now (ssh -O exit); nothing when there is none.
  void close_master() const;

 private:
  SshClient() = default;
  SshSettings settings_;
  SshClientOptions options_;
  std::vector<std::string> control_args_;  // -o ControlMaster=... or nothing (the user's own)
};

// The error for ssh's exit status 255 with `stderr_text`: unknown or changed host key, refused
// key, unreachable host, dropped connection, or ssh's own words; each names the fix.
util::Error ssh_failure(const SshSettings& settings, std::string_view stderr_text);

// "user@host:port" as configured (user and port only when set), for messages.
std::string describe_ssh_host(const SshSettings& settings);

// `path` as one word for the remote sh: quoted, with a leading "~/" left to expand to $HOME.
std::string remote_path_word(std::string_view path);

// The script sent on stdin for `script` (rc-file text before the start markers is dropped).
std::string wrap_remote_script(const RemoteScript& script, const std::vector<std::string>& remote_setup);

}  // namespace gpurun::cloud
