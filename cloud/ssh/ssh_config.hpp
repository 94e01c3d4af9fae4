#pragma once

#include <optional>
#include <string>
#include <vector>

#include "manifest/checker.hpp"
#include "manifest/yaml_tree.hpp"

namespace gpurun::cloud {

// How to reach one remote machine over SSH: the same keys cloud-wide and per host (README "SSH
// settings"). An unset key leaves the user's ~/.ssh/config in charge (User, Port, IdentityFile...).
struct SshSettings {
  std::string host;                       // a name, an address or a ~/.ssh/config alias
  std::optional<int> port;                // -p only when set
  std::optional<std::string> user;        // -l only when set
  std::optional<std::string> identity_file;  // -i only when set ("~/" is the local home)
  std::vector<std::string> ssh_options;   // "Key=Value", each passed as -o
  std::optional<std::vector<std::string>> remote_setup;  // shell lines run before every remote command
  std::optional<std::string> gpurun_path;  // a gpurun already installed there: used as is, never uploaded
  std::optional<std::string> gpurun_dir;   // where uploaded gpurun copies go (default ~/.cache/gpurun/bin)
};

// The SSH keys, for a caller's Checker::check_keys list.
const std::vector<std::string>& ssh_setting_keys();

// Reads the SSH keys of the mapping `map` (at key path `path`) into `out`, reporting bad values
// through `check` with their positions. Other keys are left to the caller.
void parse_ssh_settings(manifest::Checker& check, const manifest::YamlNode& map, const std::string& path,
                        SshSettings& out);

// `host`'s settings over the cloud-wide ones: every key the host sets wins; ssh_options are
// merged by option name (the host's value wins); remote_setup is replaced when the host sets it.
SshSettings merge_ssh_settings(const SshSettings& cloud, const SshSettings& host);

}  // namespace gpurun::cloud
