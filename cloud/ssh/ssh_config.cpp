#include "cloud/ssh/ssh_config.hpp"

#include <fmt/format.h>

#include "util/strings.hpp"

namespace gpurun::cloud {

using manifest::Checker;
using manifest::join_path;
using manifest::YamlNode;

const std::vector<std::string>& ssh_setting_keys() {
  static const std::vector<std::string> keys = {"host", "port", "user", "identity_file", "ssh_options", "remote_setup",
                                                "gpurun_path", "gpurun_dir"};
  return keys;
}

namespace {

// ssh reads a leading '-' as an option: a host or user must never start with one.
std::optional<std::string> ssh_word(Checker& check, const YamlNode& node, const std::string& path, std::string_view what) {
  auto text = check.string(node, path);
  if (!text) return std::nullopt;
  if (text->empty() || text->front() == '-' || text->find_first_of(" \t\r\n") != std::string::npos) {
    check.error(node, path, fmt::format("'{}' is not a valid {}; give a name without blanks that does not start with '-'", *text, what));
    return std::nullopt;
  }
  return text;
}

// The option name of "Key=Value" (lower-case), or nullopt when it is not of that form.
std::optional<std::string> option_name(std::string_view option) {
  const auto equals = option.find('=');
  if (equals == std::string_view::npos || equals == 0) return std::nullopt;
  for (char c : option.substr(0, equals)) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return std::nullopt;
  }
  return util::to_lower(option.substr(0, equals));
}

void parse_port(Checker& check, const YamlNode& node, const std::string& path, SshSettings& out) {
  auto port = check.integer(node, path);
  if (!port) return;
  if (*port < 1 || *port > 65535) {
    check.error(node, path, fmt::format("port {} is out of range; give a TCP port between 1 and 65535", *port));
    return;
  }
  out.port = static_cast<int>(*port);
}

void parse_options(Checker& check, const YamlNode& node, const std::string& path, SshSettings& out) {
  auto options = check.string_list(node, path);
  if (!options) return;
  for (std::size_t i = 0; i < options->size(); ++i) {
    const std::string& option = (*options)[i];
    if (!option_name(option)) {
      const YamlNode& at = node.is_sequence() && i < node.items.size() ? node.items[i] : node;
      check.error(at, fmt::format("{}[{}]", path, i),
                  fmt::format("'{}' is not an ssh option; write Key=Value, e.g. ServerAliveInterval=30", option));
      continue;
    }
    out.ssh_options.push_back(option);
  }
}

// A remote path ("~/" is the remote home): non-empty, no newline.
void parse_remote_path(Checker& check, const YamlNode& node, const std::string& path, std::optional<std::string>& out) {
  auto text = check.string(node, path);
  if (!text) return;
  if (text->empty() || text->find('\n') != std::string::npos) {
    check.error(node, path, "the remote path is empty or holds a newline; give a path on the remote host, e.g. ~/bin/gpurun");
    return;
  }
  out = *text;
}

}  // namespace

void parse_ssh_settings(Checker& check, const YamlNode& map, const std::string& path, SshSettings& out) {
  if (!map.is_map()) return;
  if (const auto* n = map.find("host")) {
    if (auto host = ssh_word(check, *n, join_path(path, "host"), "host")) out.host = *host;
  }
  if (const auto* n = map.find("user")) {
    if (auto user = ssh_word(check, *n, join_path(path, "user"), "user name")) out.user = *user;
  }
  if (const auto* n = map.find("port")) parse_port(check, *n, join_path(path, "port"), out);
  if (const auto* n = map.find("identity_file")) {
    if (auto file = check.string(*n, join_path(path, "identity_file"))) {
      if (file->empty()) {
        check.error(*n, join_path(path, "identity_file"), "the identity file is empty; give a private key path, e.g. ~/.ssh/id_ed25519");
      } else {
        out.identity_file = *file;
      }
    }
  }
  if (const auto* n = map.find("ssh_options")) parse_options(check, *n, join_path(path, "ssh_options"), out);
  if (const auto* n = map.find("remote_setup")) {
    if (n->is_scalar()) {
      if (auto line = check.string(*n, join_path(path, "remote_setup"))) out.remote_setup = std::vector<std::string>{*line};
    } else if (auto lines = check.string_list(*n, join_path(path, "remote_setup"))) {
      out.remote_setup = *lines;
    }
  }
  if (const auto* n = map.find("gpurun_path")) parse_remote_path(check, *n, join_path(path, "gpurun_path"), out.gpurun_path);
  if (const auto* n = map.find("gpurun_dir")) parse_remote_path(check, *n, join_path(path, "gpurun_dir"), out.gpurun_dir);
}

SshSettings merge_ssh_settings(const SshSettings& cloud, const SshSettings& host) {
  SshSettings merged = cloud;
  if (!host.host.empty()) merged.host = host.host;
  if (host.port) merged.port = host.port;
  if (host.user) merged.user = host.user;
  if (host.identity_file) merged.identity_file = host.identity_file;
  if (host.remote_setup) merged.remote_setup = host.remote_setup;
  if (host.gpurun_path) merged.gpurun_path = host.gpurun_path;
  if (host.gpurun_dir) merged.gpurun_dir = host.gpurun_dir;
  merged.ssh_options = host.ssh_options;
  for (const auto& option : cloud.ssh_options) {
    bool overridden = false;
    for (const auto& mine : host.ssh_options) overridden = overridden || option_name(mine) == option_name(option);
    if (!overridden) merged.ssh_options.push_back(option);
  }
  return merged;
}

}  // namespace gpurun::cloud
