#include "manifest/yaml_tree.hpp"

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>
#include <sstream>
#include <unordered_map>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/parser.h>

#include "manifest/checker.hpp"

namespace gpurun::manifest {

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

namespace {

class TreeBuilder : public YAML::EventHandler {
 public:
  TreeBuilder(std::string file, std::vector<util::Diagnostic>& errors) : file_(std::move(file)), errors_(errors) {}

  YamlNode take_root() { return std::move(root_); }
  int documents() const { return documents_; }

  void OnDocumentStart(const YAML::Mark&) override { ++documents_; }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    YamlNode node = make(YamlNode::Kind::null, mark);
    add(std::move(node), anchor);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      add(make(YamlNode::Kind::null, mark), 0);
      return;
    }
    YamlNode copy = it->second;
    if (copy.kind == YamlNode::Kind::scalar || copy.kind == YamlNode::Kind::null) {
      copy.line = mark.line + 1;
      copy.column = mark.column + 1;
    }
    add(std::move(copy), 0);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, const std::string& value) override {
    YamlNode node = make(YamlNode::Kind::scalar, mark);
    node.value = value;
    node.quoted = tag == "!";
    if (!node.quoted && tag == "?" && (value == "~" || value == "null" || value == "Null" || value == "NULL")) {
      node.kind = YamlNode::Kind::null;
      node.value.clear();
    }
    add(std::move(node), anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open_.push_back(open_node(make(YamlNode::Kind::sequence, mark), anchor));
  }
  void OnSequenceEnd() override { close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open_.push_back(open_node(make(YamlNode::Kind::map, mark), anchor));
  }
  void OnMapEnd() override { close(); }

 private:
  struct Open {
    YamlNode node;
    YAML::anchor_t anchor = 0;
    bool have_key = false;
    YamlNode key;
    // Key -> entry index, kept once a map grows large so that big maps stay linear to build.
    std::unordered_map<std::string, std::size_t> index;
  };

  static constexpr std::size_t index_from = 16;

  static Open open_node(YamlNode node, YAML::anchor_t anchor) {
    Open open;
    open.node = std::move(node);
    open.anchor = anchor;
    return open;
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
    return key.empty() ? path : join_path(path, key);
  }

  static YamlNode make(YamlNode::Kind kind, const YAML::Mark& mark) {
    YamlNode node;
    node.kind = kind;
    node.line = mark.line + 1;
    node.column = mark.column + 1;
    return node;
  }

  void close() {
    Open done = std::move(open_.back());
    open_.pop_back();
    add(std::move(done.node), done.anchor);
  }

  void add(YamlNode node, YAML::anchor_t anchor) {
    if (anchor != 0) anchors_[anchor] = node;
    if (open_.empty()) {
      if (documents_ <= 1) root_ = std::move(node);
      return;
    }
    Open& parent = open_.back();
    if (parent.node.kind == YamlNode::Kind::sequence) {
      parent.node.items.push_back(std::move(node));
      return;
    }
    if (!parent.have_key) {
      parent.key = std::move(node);
      parent.have_key = true;
      return;
    }
    YamlNode key = std::move(parent.key);
    parent.have_key = false;
    add_entry(parent, std::move(key), std::move(node));
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
  std::unordered_map<YAML::anchor_t, YamlNode> anchors_;
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

YamlDocument parse_yaml(std::string_view text, const std::string& file) {
  YamlDocument doc;
  std::istringstream stream{std::string(text)};
  TreeBuilder builder(file, doc.errors);
  try {
    YAML::Parser parser(stream);
    if (parser.HandleNextDocument(builder) && parser.HandleNextDocument(builder)) {
      doc.errors.push_back({file, 1, 1, "", "the file holds more than one YAML document ('---'); keep one"});
    }
  } catch (const YAML::Exception& e) {
    doc.errors.push_back({file, std::max(e.mark.line, 0) + 1, std::max(e.mark.column, 0) + 1, "",
                          fmt::format("invalid YAML: {}", e.msg)});
    return doc;
  }
  doc.root = builder.take_root();
  fix_merged_positions(doc.root);
  return doc;
}

}  // namespace gpurun::manifest
