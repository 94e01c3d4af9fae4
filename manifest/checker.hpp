#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "manifest/yaml_tree.hpp"
#include "util/diagnostic.hpp"

namespace gpurun::manifest {


// Collects schema errors for one file with exact positions; shared by the manifest and config.
class Checker {
 public:
  Checker(std::string file, std::vector<util::Diagnostic>& out) : file_(std::move(file)), out_(out) {}

  const std::string& file() const { return file_; }
  // Records an error at `at`'s position.
  void error(const YamlNode& at, const std::string& path, std::string message);
  // True when `node` is a mapping; else reports "expected a mapping, got ...".
  bool expect_map(const YamlNode& node, const std::string& path);
  // True when `node` is a list; else reports "expected a list, got ...".
  bool expect_sequence(const YamlNode& node, const std::string& path);
  // The same two checks for values that may be secret: the error names the kind, never the value.
  bool expect_secret_map(const YamlNode& node, const std::string& path);
  bool expect_secret_sequence(const YamlNode& node, const std::string& path);
  // Reports every key of `map` that is not in `allowed`, with a did-you-mean suggestion.
  void check_keys(const YamlNode& map, const std::string& path, const std::vector<std::string>& allowed);
  // Reports `key` missing from `map` (at the map's position).
  void require(const YamlNode& map, const std::string& path, std::string_view key);
  // A scalar's text; reports lists, mappings and nulls.
  std::optional<std::string> string(const YamlNode& node, const std::string& path);
  // A non-negative integer; reports anything else ("expected a whole number ...").
  std::optional<long long> integer(const YamlNode& node, const std::string& path);
  // A non-negative decimal number.
  std::optional<double> number(const YamlNode& node, const std::string& path);
  // A list of strings (a single scalar is reported).
  std::optional<std::vector<std::string>> string_list(const YamlNode& node, const std::string& path);
  // A mapping of string keys to scalar values (env-style); non-scalar values are reported.
  std::optional<std::vector<std::pair<std::string, std::string>>> string_map(const YamlNode& node, const std::string& path);

 private:
  std::string file_;
  std::vector<util::Diagnostic>& out_;
};

}  // namespace gpurun::manifest
