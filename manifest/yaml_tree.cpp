#include "manifest/yaml_tree.hpp"

#include <fmt/format.h>
#include <map>
#include <sstream>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/parser.h>

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
    open_.push_back(Open{make(YamlNode::Kind::sequence, mark), anchor, false, {}});
  }
  void OnSequenceEnd() override { close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open_.push_back(Open{make(YamlNode::Kind::map, mark), anchor, false, {}});
  }
  void OnMapEnd() override { close(); }

 private:
  struct Open {
    YamlNode node;
    YAML::anchor_t anchor;
    bool have_key;
    YamlNode key;
  };

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
    parent.have_key = false;
    add_entry(parent.node, std::move(parent.key), std::move(node));
  }

  void add_entry(YamlNode& map, YamlNode key, YamlNode value) {
    if (key.kind != YamlNode::Kind::scalar) {
      errors_.push_back({file_, key.line, key.column, "", "keys must be plain strings"});
      return;
    }
    if (key.value == "<<" && !key.quoted) {
      merge(map, value);
      return;
    }
    for (auto& [existing, existing_value] : map.entries) {
      if (existing.value == key.value) {
        if (existing.line < 0) {  // came from a merge: an explicit key overrides it
          existing = std::move(key);
          existing_value = std::move(value);
          return;
        }
        errors_.push_back({file_, key.line, key.column, "",
                           fmt::format("duplicate key '{}' (first defined at line {}, column {}); remove one of them",
                                       key.value, existing.line, existing.column)});
        return;
      }
    }
    map.entries.emplace_back(std::move(key), std::move(value));
  }

  // `<<: *base` or `<<: [*a, *b]`: entries not already present are added, marked as merged.
  void merge(YamlNode& map, const YamlNode& source) {
    if (source.kind == YamlNode::Kind::sequence) {
      for (const auto& item : source.items) merge(map, item);
      return;
    }
    if (source.kind != YamlNode::Kind::map) {
      errors_.push_back({file_, source.line, source.column, "", "a merge key '<<' needs a mapping or a list of mappings"});
      return;
    }
    for (const auto& [k, v] : source.entries) {
      if (map.find(k.value) != nullptr) continue;
      YamlNode key = k;
      key.line = -k.line;
      if (key.line == 0) key.line = -1;
      map.entries.emplace_back(std::move(key), v);
    }
  }

  std::string file_;
  std::vector<util::Diagnostic>& errors_;
  std::vector<Open> open_;
  std::map<YAML::anchor_t, YamlNode> anchors_;
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
    doc.errors.push_back({file, e.mark.line + 1, e.mark.column + 1, "", fmt::format("invalid YAML: {}", e.msg)});
    return doc;
  }
  doc.root = builder.take_root();
  fix_merged_positions(doc.root);
  return doc;
}

}  // namespace gpurun::manifest
