#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/diagnostic.hpp"

namespace gpurun::manifest {

// A YAML node with its 1-based source position, built from libyaml's event parser so that
// positions are exact and duplicate keys are caught (yaml-cpp's YAML::Load keeps neither).
struct YamlNode {
  enum class Kind { null, scalar, sequence, map };

  Kind kind = Kind::null;
  int line = 0;
  int column = 0;
  std::string value;    // scalars only
  bool quoted = false;  // scalar was quoted ('...' or "..."): never null/bool/number-like
  std::vector<YamlNode> items;                           // sequence items
  std::vector<std::pair<YamlNode, YamlNode>> entries;    // map entries in file order (keys are scalars)

  // Defined out of line: std::pair<YamlNode, YamlNode> needs the complete type (clang + libstdc++).
  YamlNode();
  YamlNode(const YamlNode&);
  YamlNode(YamlNode&&) noexcept;
  YamlNode& operator=(const YamlNode&);
  YamlNode& operator=(YamlNode&&) noexcept;
  ~YamlNode();

  bool is_null() const { return kind == Kind::null; }
  bool is_scalar() const { return kind == Kind::scalar; }
  bool is_sequence() const { return kind == Kind::sequence; }
  bool is_map() const { return kind == Kind::map; }
  // The value for `key` in a map, or nullptr (also for non-maps).
  const YamlNode* find(std::string_view key) const;
  // "a string", "a number", "a list", "a mapping", "null": for "expected X, got Y" messages.
  std::string describe() const;
  // The same without the value ("a string", "a number"): for places whose values are secret.
  std::string describe_kind() const;
};

// A parsed file: the root (null when empty) and every syntax or duplicate-key error found.
struct YamlDocument {
  YamlNode root;
  std::vector<util::Diagnostic> errors;
};

// Limits no real manifest or config comes near (a 10,000-function manifest is ~2 MB and ~300,000
// nodes); past one, parsing stops with a positioned error in milliseconds and bounded memory.
inline constexpr std::size_t max_yaml_bytes = 8u << 20;        // input size
inline constexpr std::size_t max_yaml_depth = 64;              // lists/mappings nested in each other
inline constexpr std::size_t max_yaml_nodes = 1'000'000;       // nodes built, counting anchor and alias copies
inline constexpr std::size_t max_yaml_text_bytes = 16u << 20;  // scalar bytes built, counting the copies

// Parses YAML text; `file` is used in diagnostics. Anchors, aliases and `<<` merge keys are
// resolved; duplicate keys are reported (the first one is kept). Input past a limit above is an
// error at the position where the limit was crossed (the root is then null).
YamlDocument parse_yaml(std::string_view text, const std::string& file);

// Reads `path` into `text`, at most max_yaml_bytes + 1 bytes (enough for parse_yaml to report a
// file that is too large, without holding all of it). Returns 0, or the errno of the failure.
int read_yaml_file(const std::string& path, std::string& text);

// The 1-based line and column (in characters) of byte `offset` of `text`.
std::pair<int, int> position_of(std::string_view text, std::size_t offset);

// "a.b" + "c" -> "a.b.c"; keys that are not identifiers ("/data") are bracketed: a.b["/data"].
std::string join_path(const std::string& path, std::string_view key);

}  // namespace gpurun::manifest
