#pragma once

#include <cstdint>
#include <string>

#include "cloud/ssh/ssh_client.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// Where gpurun comes from and goes to on a remote host (README "SSH settings": gpurun_path).
struct RemoteGpurunOptions {
  // Set (gpurun_path / node_gpurun): used as is, only `--version` checked. Empty: the client's
  // `gpurun_path` setting, if any.
  std::string configured_path;
  std::string directory;        // where keyed copies go; empty: `gpurun_dir`, else ~/.cache/gpurun/bin
  std::string local_binary;     // the binary to copy; empty: this process (/proc/self/exe)
  std::string local_system;     // `uname -sm` of this machine; empty: asked from uname(2)
  std::string setting = "gpurun_path";  // the setting errors name as the override
};

// The gpurun that runs on a remote host, and what it cost to get it there.
struct RemoteGpurun {
  std::string path;      // as the remote shell reads it ("~/" stays for $HOME)
  std::string version;   // its `--version` output, trimmed
  bool uploaded = false;
  std::uint64_t bytes_sent = 0;
};

// Makes sure a gpurun that runs exists on the host: the configured path, or this binary copied
// (on first use) to <directory>/gpurun-<sha256>. One round trip checks `uname -sm` and the keyed
// copy; an upload is written under a temporary name, checked with `--version`, then renamed.
util::Result<RemoteGpurun> ensure_remote_gpurun(const SshClient& client, const RemoteGpurunOptions& options = {});

// "Linux x86_64": this machine's `uname -sm`.
std::string local_uname();

}  // namespace gpurun::cloud
