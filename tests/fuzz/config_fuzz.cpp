// libFuzzer target: the config file (cloud::parse_config). scripts/fuzz config SECONDS.
// Invariants: ok <=> no diagnostics; positions >= 1:1; a secret value (one holding the marker
// "s3cr3t" that appears nowhere else) is never in a message; a tree read without errors prints
// and reads back as the same tree with the same diagnostics (paths and messages).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cloud/backend/kubernetes/kubernetes_settings.hpp"
#include "cloud/backend/local/local_settings.hpp"
#include "cloud/backend/slurm/slurm_settings.hpp"
#include "cloud/backend/ssh/ssh_settings.hpp"
#include "cloud/plan/config.hpp"
#include "manifest/yaml_tree.hpp"
#include "yaml_print.hpp"

namespace {

using gpurun::manifest::YamlNode;
constexpr std::string_view marker = "s3cr3t";

std::size_t count_marker(std::string_view text) {
  std::size_t n = 0;
  for (std::size_t at = text.find(marker); at != std::string_view::npos; at = text.find(marker, at + 1)) ++n;
  return n;
}

// Markers in every scalar (keys included) of `node`.
std::size_t markers_in(const YamlNode& node) {
  std::size_t n = count_marker(node.value);
  for (const auto& item : node.items) n += markers_in(item);
  for (const auto& [k, v] : node.entries) n += markers_in(k) + markers_in(v);
  return n;
}

// Markers in the secret values: the scalars under secrets.<name>.<key> (and a scalar in place of
// a secret's mapping, or of the whole section).
std::size_t markers_in_secret_values(const YamlNode& root) {
  const YamlNode* secrets = root.find("secrets");
  if (secrets == nullptr) return 0;
  if (!secrets->is_map()) return markers_in(*secrets);
  std::size_t n = 0;
  for (const auto& [name, secret] : secrets->entries) {
    if (!secret.is_map()) {
      n += markers_in(secret);
      continue;
    }
    for (const auto& [key, value] : secret.entries) n += markers_in(value);
  }
  return n;
}

std::vector<std::pair<std::string, std::string>> messages(const std::vector<gpurun::util::Diagnostic>& diagnostics) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& d : diagnostics) out.emplace_back(d.path, d.message);
  return out;
}

// Every backend's config keys, as cloud/backend/registry.cpp maps them (without the backends
// themselves, which the fuzz build does not compile).
const gpurun::cloud::BackendKeyParsers& key_parsers() {
  static const gpurun::cloud::BackendKeyParsers parsers = {
      {"kubernetes", gpurun::cloud::kubernetes_config_keys()},
      {"local", gpurun::cloud::local_config_keys()},
      {"slurm", gpurun::cloud::slurm_config_keys()},
      {"ssh", gpurun::cloud::ssh_config_keys()},
  };
  return parsers;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using gpurun::fuzz::fail;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<gpurun::util::Diagnostic> diagnostics;
  const auto config = gpurun::cloud::parse_config(text, "config.yaml", diagnostics, key_parsers());
  if (config.ok() != diagnostics.empty()) fail("config: ok <=> no diagnostics");
  for (const auto& d : diagnostics) {
    if (d.line < 1 || d.column < 1) fail("config: a position before 1:1");
    if (d.message.empty()) fail("config: an empty message");
  }
  const auto doc = gpurun::manifest::parse_yaml(text, "config.yaml");
  const std::size_t secret_markers = markers_in_secret_values(doc.root);
  if (secret_markers > 0 && secret_markers == markers_in(doc.root) && secret_markers == count_marker(text)) {
    for (const auto& d : diagnostics) {
      if (d.message.find(marker) != std::string::npos || d.path.find(marker) != std::string::npos) {
        fail("config: a secret value is echoed in a diagnostic");
      }
    }
  }
  if (!doc.errors.empty()) return 0;
  const auto again = gpurun::fuzz::printed(doc.root);
  if (!again) return 0;
  std::vector<gpurun::util::Diagnostic> reread;
  const auto config2 = gpurun::cloud::parse_config(*again, "config.yaml", reread, key_parsers());
  if (config2.ok() != config.ok() || messages(reread) != messages(diagnostics)) {
    fail("config: the printed tree gives other diagnostics");
  }
  return 0;
}
