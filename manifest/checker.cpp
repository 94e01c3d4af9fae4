#include "manifest/checker.hpp"

#include <cctype>
#include <fmt/format.h>

#include "util/strings.hpp"

namespace gpurun::manifest {

void Checker::error(const YamlNode& at, const std::string& path, std::string message) {
  out_.push_back({file_, at.line, at.column, path, std::move(message)});
}

bool Checker::expect_map(const YamlNode& node, const std::string& path) {
  if (node.is_map()) return true;
  error(node, path, fmt::format("expected a mapping (key: value lines), got {}", node.describe()));
  return false;
}

bool Checker::expect_sequence(const YamlNode& node, const std::string& path) {
  if (node.is_sequence()) return true;
  error(node, path, fmt::format("expected a list, got {}", node.describe()));
  return false;
}

bool Checker::expect_secret_map(const YamlNode& node, const std::string& path) {
  if (node.is_map()) return true;
  error(node, path, fmt::format("expected a mapping (key: value lines), got {} (not shown: it may be secret)", node.describe_kind()));
  return false;
}

bool Checker::expect_secret_sequence(const YamlNode& node, const std::string& path) {
  if (node.is_sequence()) return true;
  error(node, path, fmt::format("expected a list of secret names, got {} (not shown: it may be secret)", node.describe_kind()));
  return false;
}

void Checker::check_keys(const YamlNode& map, const std::string& path, const std::vector<std::string>& allowed) {
  for (const auto& [key, value] : map.entries) {
    bool known = false;
    for (const auto& a : allowed) known = known || a == key.value;
    if (known) continue;
    const auto suggestion = util::did_you_mean(key.value, allowed);
    if (suggestion) {
      error(key, join_path(path, key.value), fmt::format("unknown key '{}' (did you mean '{}'?)", key.value, *suggestion));
    } else {
      error(key, join_path(path, key.value),
            fmt::format("unknown key '{}'; allowed keys here: {}", key.value, util::join(allowed, ", ")));
    }
  }
}

void Checker::require(const YamlNode& map, const std::string& path, std::string_view key) {
  if (map.find(key) != nullptr) return;
  error(map, path.empty() ? std::string(key) : path, path.empty() ? fmt::format("missing required key '{}'", key)
                                                                   : fmt::format("missing required key '{}'", key));
}

std::optional<std::string> Checker::string(const YamlNode& node, const std::string& path) {
  if (node.is_scalar()) return node.value;
  error(node, path, fmt::format("expected a string, got {}", node.describe()));
  return std::nullopt;
}

std::optional<long long> Checker::integer(const YamlNode& node, const std::string& path) {
  if (node.is_scalar() && !node.quoted) {
    if (auto value = util::parse_uint(node.value)) return value;
  }
  error(node, path, fmt::format("expected a whole number, got {}", node.describe()));
  return std::nullopt;
}

std::optional<double> Checker::number(const YamlNode& node, const std::string& path) {
  if (node.is_scalar() && !node.quoted && !node.value.empty()) {
    std::size_t used = 0;
    try {
      const double value = std::stod(node.value, &used);
      if (used == node.value.size() && value >= 0) return value;
    } catch (const std::exception&) {
    }
  }
  error(node, path, fmt::format("expected a non-negative number, got {}", node.describe()));
  return std::nullopt;
}

std::optional<std::vector<std::string>> Checker::string_list(const YamlNode& node, const std::string& path) {
  if (!expect_sequence(node, path)) return std::nullopt;
  std::vector<std::string> out;
  bool ok = true;
  for (std::size_t i = 0; i < node.items.size(); ++i) {
    auto s = string(node.items[i], fmt::format("{}[{}]", path, i));
    if (s) {
      out.push_back(*s);
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> Checker::string_map(const YamlNode& node,
                                                                                    const std::string& path) {
  if (!expect_map(node, path)) return std::nullopt;
  std::vector<std::pair<std::string, std::string>> out;
  bool ok = true;
  for (const auto& [key, value] : node.entries) {
    if (value.is_scalar()) {
      out.emplace_back(key.value, value.value);
    } else {
      error(value, join_path(path, key.value),
            fmt::format("expected a string value, got {}; quote it (\"...\")", value.describe()));
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

}  // namespace gpurun::manifest
