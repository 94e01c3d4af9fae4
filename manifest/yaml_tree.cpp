#include "manifest/yaml_tree.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cstdlib>
#include <fmt/format.h>
#include <unordered_map>
#include <yaml.h>

namespace gpurun::manifest {

YamlNode::YamlNode() = default;
YamlNode::YamlNode(const YamlNode&) = default;
YamlNode::YamlNode(YamlNode&&) noexcept = default;
YamlNode& YamlNode::operator=(const YamlNode&) = default;
YamlNode& YamlNode::operator=(YamlNode&&) noexcept = default;
YamlNode::~YamlNode() = default;

const YamlNode* YamlNode::find(std::string_view key) const {
  if (kind != Kind::map) return nullptr;
  for (const auto& [k, v] : entries) {
    if (k.value == key) return &v;
  }
  return nullptr;
}

std::string YamlNode::describe() const {
  switch (kind) {
    case Kind::null: return "nothing (null)";
    case Kind::sequence: return "a list";
    case Kind::map: return "a mapping";
    case Kind::scalar: break;
  }
  if (!quoted) {
    if (value == "true" || value == "false") return fmt::format("a boolean ({})", value);
    bool number = !value.empty();
    for (char c : value) number = number && ((c >= '0' && c <= '9') || c == '.' || c == '-');
    if (number) return fmt::format("a number ({})", value);
  }
  return fmt::format("a string ('{}')", value);
}

std::string YamlNode::describe_kind() const {
  const std::string full = describe();
  return kind == Kind::scalar ? full.substr(0, full.find(" (")) : full;
}

namespace {

std::string_view text_of(const yaml_char_t* text) {
  return text == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(text));
}

// Builds the tree from libyaml's events (libyaml is several times faster than yaml-cpp's parser;
// 10k-function manifests must load quickly).
class TreeBuilder {
 public:
  TreeBuilder(std::string file, std::vector<util::Diagnostic>& errors) : file_(std::move(file)), errors_(errors) {}

  // The root; null when a limit stopped parsing.
  YamlNode take_root() { return stopped_ ? YamlNode() : std::move(root_); }

  // Feeds one event; false when parsing should stop (a second document).
  bool on_event(const yaml_event_t& event) {
    const yaml_mark_t& mark = event.start_mark;
    switch (event.type) {
      case YAML_DOCUMENT_START_EVENT:
        if (++documents_ > 1) {
          errors_.push_back({file_, line_of(mark), column_of(mark), "",
                             "the file holds more than one YAML document ('---'); keep one"});
          return false;
        }
        return true;
      case YAML_SCALAR_EVENT: {
        const auto& s = event.data.scalar;
        YamlNode node = make(YamlNode::Kind::scalar, mark);
        node.value.assign(reinterpret_cast<const char*>(s.value), s.length);
        const std::string_view tag = text_of(s.tag);
        node.quoted = s.style != YAML_PLAIN_SCALAR_STYLE || tag == YAML_STR_TAG;
        const Size size{1, s.length};
        if (!charge(size, mark)) return false;
        if (!node.quoted && (tag.empty() || tag == YAML_NULL_TAG) &&
            (node.value.empty() || node.value == "~" || node.value == "null" || node.value == "Null" ||
             node.value == "NULL")) {
          node.kind = YamlNode::Kind::null;
          node.value.clear();
        }
        return add(std::move(node), text_of(s.anchor), size, mark);
      }
      case YAML_ALIAS_EVENT: {
        const std::string anchor(text_of(event.data.alias.anchor));
        const auto it = anchors_.find(anchor);
        if (it == anchors_.end()) {
          errors_.push_back({file_, line_of(mark), column_of(mark), current_path(""),
                             fmt::format("unknown anchor '*{}'; define it first with '&{}'", anchor, anchor)});
          return add(make(YamlNode::Kind::null, mark), {}, Size{1, 0}, mark);
        }
        const Size size = it->second.second;
        if (!charge(size, mark)) return false;
        YamlNode copy = it->second.first;
        if (copy.kind == YamlNode::Kind::scalar || copy.kind == YamlNode::Kind::null) {
          copy.line = line_of(mark);
          copy.column = column_of(mark);
        }
        return add(std::move(copy), {}, size, mark);
      }
      case YAML_SEQUENCE_START_EVENT:
        return open(make(YamlNode::Kind::sequence, mark), text_of(event.data.sequence_start.anchor), mark);
      case YAML_MAPPING_START_EVENT:
        return open(make(YamlNode::Kind::map, mark), text_of(event.data.mapping_start.anchor), mark);
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        return close();
      default:
        return true;
    }
  }

 private:
  // What a subtree costs: its nodes and scalar bytes.
  struct Size {
    std::size_t nodes = 0;
    std::size_t bytes = 0;
  };

  struct Open {
    YamlNode node;
    std::string anchor;
    yaml_mark_t mark{};
    Size size{1, 0};
    bool have_key = false;
    YamlNode key;
    // Key -> entry index, kept once a map grows large so that big maps stay linear to build.
    std::unordered_map<std::string, std::size_t> index;
  };

  static constexpr std::size_t index_from = 16;

  static int line_of(const yaml_mark_t& mark) { return static_cast<int>(mark.line) + 1; }
  static int column_of(const yaml_mark_t& mark) { return static_cast<int>(mark.column) + 1; }

  // Starts a list or mapping; false (with an error) past max_yaml_depth.
  bool open(YamlNode node, std::string_view anchor, const yaml_mark_t& mark) {
    if (open_.size() >= max_yaml_depth) {
      fail(mark, fmt::format("lists and mappings are nested more than {} deep; no manifest or config needs that, "
                             "flatten this part",
                             max_yaml_depth));
      return false;
    }
    if (!charge(Size{1, 0}, mark)) return false;
    Open o;
    o.node = std::move(node);
    o.anchor = anchor;
    o.mark = mark;
    open_.push_back(std::move(o));
    return true;
  }

  // Counts nodes and scalar bytes about to be built; false (with an error at `mark`) past the
  // limits, before anything is copied (alias bombs, nested anchors).
  bool charge(Size size, const yaml_mark_t& mark) {
    built_.nodes += size.nodes;
    built_.bytes += size.bytes;
    if (built_.nodes > max_yaml_nodes) {
      fail(mark, fmt::format("the file expands to more than {} nodes (anchors and aliases count each copy); "
                             "use fewer or smaller anchors and aliases",
                             max_yaml_nodes));
      return false;
    }
    if (built_.bytes > max_yaml_text_bytes) {
      fail(mark, fmt::format("the file's values expand to more than {} MiB of text (anchors and aliases count each "
                             "copy); use fewer or smaller anchors and aliases",
                             max_yaml_text_bytes >> 20));
      return false;
    }
    return true;
  }

  void fail(const yaml_mark_t& mark, std::string message) {
    errors_.push_back({file_, line_of(mark), column_of(mark), current_path(""), std::move(message)});
    stopped_ = true;
  }

  static YamlNode make(YamlNode::Kind kind, const yaml_mark_t& mark) {
    YamlNode node;
    node.kind = kind;
    node.line = line_of(mark);
    node.column = column_of(mark);
    return node;
  }

  // The entry of `open`'s map with key `key`, or nullptr.
  static std::pair<YamlNode, YamlNode>* find_entry(Open& open, const std::string& key) {
    auto& entries = open.node.entries;
    if (entries.size() < index_from) {
      for (auto& entry : entries) {
        if (entry.first.value == key) return &entry;
      }
      return nullptr;
    }
    for (std::size_t i = open.index.size(); i < entries.size(); ++i) open.index.emplace(entries[i].first.value, i);
    const auto it = open.index.find(key);
    return it == open.index.end() ? nullptr : &entries[it->second];
  }

  // The key path of the value being built, plus `key`: "functions.train.gpu".
  std::string current_path(std::string_view key) const {
    std::string path;
    for (std::size_t i = 0; i + 1 < open_.size(); ++i) {
      const Open& o = open_[i];
      if (o.node.kind == YamlNode::Kind::sequence) {
        path += fmt::format("[{}]", o.node.items.size());
      } else if (o.have_key) {
        path = join_path(path, o.key.value);
      }
    }
    if (!open_.empty() && open_.back().node.kind == YamlNode::Kind::sequence) {
      path += fmt::format("[{}]", open_.back().node.items.size());
    } else if (!open_.empty() && open_.back().have_key) {
      path = join_path(path, open_.back().key.value);
    }
    return key.empty() ? path : join_path(path, key);
  }

  bool close() {
    if (open_.empty()) return true;
    Open done = std::move(open_.back());
    open_.pop_back();
    return add(std::move(done.node), done.anchor, done.size, done.mark);
  }

  // Adds a finished node of `size` to its parent; an anchored node is copied (and charged) for
  // later aliases. False when a limit stops parsing.
  bool add(YamlNode node, std::string_view anchor, Size size, const yaml_mark_t& mark) {
    if (!anchor.empty()) {
      if (!charge(size, mark)) return false;
      anchors_[std::string(anchor)] = {node, size};
    }
    if (open_.empty()) {
      if (documents_ <= 1) root_ = std::move(node);
      return true;
    }
    Open& parent = open_.back();
    parent.size.nodes += size.nodes;
    parent.size.bytes += size.bytes;
    if (parent.node.kind == YamlNode::Kind::sequence) {
      parent.node.items.push_back(std::move(node));
      return true;
    }
    if (!parent.have_key) {
      parent.key = std::move(node);
      parent.have_key = true;
      return true;
    }
    YamlNode key = std::move(parent.key);
    parent.have_key = false;
    add_entry(parent, std::move(key), std::move(node));
    return true;
  }

  void add_entry(Open& map, YamlNode key, YamlNode value) {
    if (key.kind != YamlNode::Kind::scalar) {
      errors_.push_back({file_, key.line, key.column, current_path(""),
                         "keys must be plain strings (not lists, mappings or null); quote the key"});
      return;
    }
    if (key.value == "<<" && !key.quoted) {
      merge(map, value);
      return;
    }
    if (auto* existing = find_entry(map, key.value)) {
      if (existing->first.line < 0) {  // came from a merge: an explicit key overrides it
        existing->first = std::move(key);
        existing->second = std::move(value);
        return;
      }
      errors_.push_back({file_, key.line, key.column, current_path(key.value),
                         fmt::format("duplicate key '{}' (first defined at line {}, column {}); remove one of them",
                                     key.value, existing->first.line, existing->first.column)});
      return;
    }
    map.node.entries.emplace_back(std::move(key), std::move(value));
  }

  // `<<: *base` or `<<: [*a, *b]`: entries not already present are added, marked as merged
  // (negative line) so that an explicit key later in the map overrides them.
  void merge(Open& map, const YamlNode& source) {
    if (source.kind == YamlNode::Kind::sequence) {
      for (const auto& item : source.items) merge(map, item);
      return;
    }
    if (source.kind != YamlNode::Kind::map) {
      errors_.push_back({file_, source.line, source.column, current_path("<<"),
                         fmt::format("a merge key '<<' needs a mapping or a list of mappings (an alias like *base), got {}",
                                     source.describe())});
      return;
    }
    for (const auto& [k, v] : source.entries) {
      if (find_entry(map, k.value) != nullptr) continue;
      YamlNode key = k;
      key.line = k.line == 0 ? -1 : -std::abs(k.line);
      map.node.entries.emplace_back(std::move(key), v);
    }
  }

  std::string file_;
  std::vector<util::Diagnostic>& errors_;
  std::vector<Open> open_;
  std::unordered_map<std::string, std::pair<YamlNode, Size>> anchors_;  // node, its size
  Size built_;  // everything built so far, copies included
  bool stopped_ = false;
  YamlNode root_;
  int documents_ = 0;
};

// Merged keys carry negated lines while building; restore them.
void fix_merged_positions(YamlNode& node) {
  for (auto& item : node.items) fix_merged_positions(item);
  for (auto& [k, v] : node.entries) {
    if (k.line < 0) k.line = -k.line;
    fix_merged_positions(v);
  }
}

}  // namespace

int read_yaml_file(const std::string& path, std::string& text) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  text.clear();
  char buffer[65536];
  while (text.size() <= max_yaml_bytes) {
    const ssize_t n = ::read(fd, buffer, std::min(sizeof buffer, max_yaml_bytes + 1 - text.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return error;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return 0;
}

std::pair<int, int> position_of(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  int line = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n' || (text[i] == '\r' && (i + 1 >= text.size() || text[i + 1] != '\n'))) {
      ++line;
      line_start = i + 1;
    }
  }
  int column = 1;
  for (std::size_t i = line_start; i < offset; ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++column;  // UTF-8 continuation bytes do not count
  }
  return {line, column};
}

namespace {

// The error for a libyaml failure, positioned by its mark, or for a reader error (NUL bytes,
// invalid UTF-8), which has no mark, by its byte offset.
util::Diagnostic parser_error(const yaml_parser_t& parser, std::string_view text, const std::string& file) {
  if (parser.error == YAML_READER_ERROR) {
    const auto [line, column] = position_of(text, parser.problem_offset);
    std::string what = parser.problem != nullptr ? parser.problem : "unreadable input";
    if (parser.problem_value >= 0) what += fmt::format(" (byte 0x{:02X})", parser.problem_value & 0xFF);
    return {file, line, column, "",
            fmt::format("invalid YAML: {}; the file must be UTF-8 text without control characters", what)};
  }
  const yaml_mark_t& mark = parser.problem_mark;
  std::string message = fmt::format("invalid YAML: {}", parser.problem != nullptr ? parser.problem : "syntax error");
  if (parser.context != nullptr) {
    message += fmt::format(" ({} at line {}, column {})", parser.context, parser.context_mark.line + 1,
                           parser.context_mark.column + 1);
  }
  message += "; check the indentation and quote values that contain ': ', '#', '[' or '{'";
  return {file, static_cast<int>(mark.line) + 1, static_cast<int>(mark.column) + 1, "", std::move(message)};
}

}  // namespace

YamlDocument parse_yaml(std::string_view text, const std::string& file) {
  YamlDocument doc;
  if (text.size() > max_yaml_bytes) {
    const auto [line, column] = position_of(text, max_yaml_bytes);
    doc.errors.push_back({file, line, column, "",
                          fmt::format("the file is larger than {} MiB; no manifest or config needs that, split it",
                                      max_yaml_bytes >> 20)});
    return doc;
  }
  TreeBuilder builder(file, doc.errors);
  yaml_parser_t parser;
  if (yaml_parser_initialize(&parser) == 0) {
    doc.errors.push_back({file, 1, 1, "", "cannot parse YAML: out of memory"});
    return doc;
  }
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  bool failed = false;
  while (true) {
    yaml_event_t event;
    if (yaml_parser_parse(&parser, &event) == 0) {
      doc.errors.push_back(parser_error(parser, text, file));
      failed = true;
      break;
    }
    const bool end = event.type == YAML_STREAM_END_EVENT;
    const bool go_on = builder.on_event(event);
    yaml_event_delete(&event);
    if (end || !go_on) break;
  }
  yaml_parser_delete(&parser);
  if (failed) return doc;
  doc.root = builder.take_root();
  fix_merged_positions(doc.root);
  return doc;
}

std::string join_path(const std::string& path, std::string_view key) {
  bool plain = !key.empty();
  for (char c : key) plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  if (!plain) return fmt::format("{}[\"{}\"]", path, key);
  if (path.empty()) return std::string(key);
  return fmt::format("{}.{}", path, key);
}

}  // namespace gpurun::manifest
