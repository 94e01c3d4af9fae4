// Shared by the fuzz targets that read YAML: prints a parsed tree back as flow YAML, and compares
// trees, so that parse(print(tree)) == tree can be asserted. Not part of gpurun.
#pragma once

#include <cctype>
#include <cstdio>
#include <optional>
#include <string>

#include "fuzz_fail.hpp"
#include "manifest/yaml_tree.hpp"

namespace gpurun::fuzz {

inline bool plain_safe(const std::string& s) {
  if (s.empty() || s.front() == ' ' || s.back() == ' ') return false;
  const unsigned char first = static_cast<unsigned char>(s.front());
  if (!(std::isalnum(first) || first == '_' || first == '/' || first == '.')) return false;
  char previous = 0;
  for (char c : s) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/' || c == '@' ||
                    c == '+' || c == '=' || c == '-' || (c == ' ' && previous != ' ');
    if (!ok) return false;
    previous = c;
  }
  return true;
}

inline void print_scalar(const manifest::YamlNode& node, std::string& out, bool& printable) {
  if (!node.quoted) {
    const std::string& v = node.value;
    // A plain null word under a custom tag stays a string here, but would read back as null.
    if (!plain_safe(v) || v == "null" || v == "Null" || v == "NULL") printable = false;
    out += node.value;
    return;
  }
  out += '"';
  const std::string& v = node.value;
  for (std::size_t i = 0; i < v.size();) {
    const unsigned char u = static_cast<unsigned char>(v[i]);
    const std::size_t length = u < 0x80 ? 1 : u >= 0xF0 ? 4 : u >= 0xE0 ? 3 : 2;
    if (i + length > v.size()) {
      printable = false;
      return;
    }
    char32_t code = length == 1 ? u : length == 2 ? (u & 0x1F) : length == 3 ? (u & 0x0F) : (u & 0x07);
    for (std::size_t k = 1; k < length; ++k) code = (code << 6) | (static_cast<unsigned char>(v[i + k]) & 0x3F);
    // Only what YAML's reader accepts goes out raw; line breaks (NEL, LS, PS) are escaped too.
    const bool raw = (code >= 0x20 && code <= 0x7E && code != '"' && code != '\\') || (code >= 0xA0 && code <= 0xD7FF && code != 0x2028 && code != 0x2029) ||
                     (code >= 0xE000 && code <= 0xFFFD) ||
                     (code >= 0x10000 && code <= 0x10FFFF);
    if (raw) {
      out.append(v, i, length);
    } else if (code == '"' || code == '\\') {
      out += '\\';
      out += static_cast<char>(code);
    } else {
      char escape[16];
      if (code <= 0xFFFF) {
        std::snprintf(escape, sizeof escape, "\\u%04X", static_cast<unsigned>(code));
      } else {
        std::snprintf(escape, sizeof escape, "\\U%08X", static_cast<unsigned>(code));
      }
      out += escape;
    }
    i += length;
  }
  out += '"';
}

// Flow YAML for `node`; `printable` turns false when a plain scalar cannot be printed as it was.
inline void print_yaml(const manifest::YamlNode& node, std::string& out, bool& printable) {
  using Kind = manifest::YamlNode::Kind;
  switch (node.kind) {
    case Kind::null: out += "null"; return;
    case Kind::scalar: print_scalar(node, out, printable); return;
    case Kind::sequence:
      out += '[';
      for (std::size_t i = 0; i < node.items.size(); ++i) {
        if (i > 0) out += ", ";
        print_yaml(node.items[i], out, printable);
      }
      out += ']';
      return;
    case Kind::map:
      out += '{';
      for (std::size_t i = 0; i < node.entries.size(); ++i) {
        if (i > 0) out += ", ";
        const auto& [key, value] = node.entries[i];
        if (!key.quoted && key.value == "<<") printable = false;
        print_scalar(key, out, printable);
        out += ": ";
        print_yaml(value, out, printable);
      }
      out += '}';
      return;
  }
}

// The printed tree, or nullopt when it cannot be printed faithfully.
inline std::optional<std::string> printed(const manifest::YamlNode& root) {
  std::string out;
  bool printable = true;
  print_yaml(root, out, printable);
  out += '\n';
  if (!printable || out.size() > manifest::max_yaml_bytes) return std::nullopt;
  return out;
}

// Same kinds, values, quoting and structure (positions are not compared).
inline bool same_tree(const manifest::YamlNode& a, const manifest::YamlNode& b) {
  if (a.kind != b.kind || a.value != b.value || a.items.size() != b.items.size() ||
      a.entries.size() != b.entries.size()) {
    return false;
  }
  if (a.kind == manifest::YamlNode::Kind::scalar && a.quoted != b.quoted) return false;
  for (std::size_t i = 0; i < a.items.size(); ++i) {
    if (!same_tree(a.items[i], b.items[i])) return false;
  }
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    if (!same_tree(a.entries[i].first, b.entries[i].first) || !same_tree(a.entries[i].second, b.entries[i].second)) {
      return false;
    }
  }
  return true;
}

}  // namespace gpurun::fuzz
