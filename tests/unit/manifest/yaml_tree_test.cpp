#include <doctest/doctest.h>

#include <string>

#include "manifest/yaml_tree.hpp"

using namespace gpurun;
using namespace gpurun::manifest;

namespace {

std::vector<std::string> errors_of(const YamlDocument& doc) {
  std::vector<std::string> out;
  for (const auto& e : doc.errors) out.push_back(util::format_diagnostic(e));
  return out;
}

}  // namespace

TEST_CASE("yaml_tree: positions are exact and 1-based") {
  const auto doc = parse_yaml("a: 1\nb:\n  - x\n  - {c: 'd'}\n", "f.yaml");
  REQUIRE(doc.errors.empty());
  REQUIRE(doc.root.is_map());
  const YamlNode* a = doc.root.find("a");
  REQUIRE(a != nullptr);
  CHECK(a->line == 1);
  CHECK(a->column == 4);
  CHECK(a->describe() == "a number (1)");
  const YamlNode* b = doc.root.find("b");
  REQUIRE(b != nullptr);
  REQUIRE(b->items.size() == 2);
  CHECK(b->items[0].line == 3);
  CHECK(b->items[0].column == 5);
  const YamlNode* c = b->items[1].find("c");
  REQUIRE(c != nullptr);
  CHECK(c->quoted);
  CHECK(c->value == "d");
  CHECK(c->line == 4);
  CHECK(c->column == 9);
  CHECK(doc.root.entries[1].first.line == 2);
  CHECK(doc.root.entries[1].first.column == 1);
}

TEST_CASE("yaml_tree: nulls, quoted scalars and block scalars") {
  const auto doc = parse_yaml("a:\nb: ~\nc: 'null'\nd: |\n  line\ne: \"\"\n", "f.yaml");
  REQUIRE(doc.errors.empty());
  CHECK(doc.root.find("a")->is_null());
  CHECK(doc.root.find("b")->is_null());
  CHECK(doc.root.find("c")->is_scalar());
  CHECK(doc.root.find("c")->describe() == "a string ('null')");
  CHECK(doc.root.find("d")->value == "line\n");
  CHECK(doc.root.find("e")->is_scalar());
  CHECK(doc.root.find("e")->value.empty());
}

TEST_CASE("yaml_tree: duplicate keys are reported with their key path; the first is kept") {
  const auto doc = parse_yaml("top:\n  list:\n    - {a: 1, a: 2}\n", "f.yaml");
  CHECK(errors_of(doc) == std::vector<std::string>{"f.yaml:3:14: error: top.list[0].a: duplicate key 'a' (first "
                                                   "defined at line 3, column 8); remove one of them"});
  CHECK(doc.root.find("top")->find("list")->items[0].find("a")->value == "1");
}

TEST_CASE("yaml_tree: duplicates are found in large maps") {
  std::string text = "m:\n";
  for (int i = 0; i < 100; ++i) text += "  k" + std::to_string(i) + ": " + std::to_string(i) + "\n";
  text += "  k42: again\n";
  const auto doc = parse_yaml(text, "f.yaml");
  CHECK(errors_of(doc) == std::vector<std::string>{"f.yaml:102:3: error: m.k42: duplicate key 'k42' (first defined "
                                                   "at line 44, column 3); remove one of them"});
  CHECK(doc.root.find("m")->entries.size() == 100);
  CHECK(doc.root.find("m")->find("k42")->value == "42");
}

TEST_CASE("yaml_tree: anchors, aliases and merge keys") {
  const auto doc = parse_yaml(R"(base: &base {a: 1, b: 2}
more: &more
  <<: *base
  c: 3
x:
  <<: *more
  b: 20
  d: *base
)",
                              "f.yaml");
  REQUIRE(doc.errors.empty());
  const YamlNode* x = doc.root.find("x");
  REQUIRE(x != nullptr);
  REQUIRE(x->entries.size() == 4);
  CHECK(x->find("a")->value == "1");
  CHECK(x->find("b")->value == "20");  // an explicit key overrides a merged one, even merged twice
  CHECK(x->find("c")->value == "3");
  CHECK(x->find("d")->is_map());
  for (const auto& [key, value] : x->entries) CHECK(key.line > 0);
}

TEST_CASE("yaml_tree: syntax errors and bad aliases") {
  CHECK(errors_of(parse_yaml("a: [1, 2\n", "f.yaml")) ==
        std::vector<std::string>{"f.yaml:2:1: error: invalid YAML: did not find expected ',' or ']' (while parsing a "
                                 "flow sequence at line 1, column 4); check the indentation and quote values that "
                                 "contain ': ', '#', '[' or '{'"});
  CHECK(errors_of(parse_yaml("a: *nope\n", "f.yaml")) ==
        std::vector<std::string>{"f.yaml:1:4: error: a: unknown anchor '*nope'; define it first with '&nope'"});
  CHECK(errors_of(parse_yaml("a:\n  <<: 5\n", "f.yaml")) ==
        std::vector<std::string>{"f.yaml:2:7: error: a[\"<<\"]: a merge key '<<' needs a mapping or a list of mappings "
                                 "(an alias like *base), got a number (5)"});
  CHECK(errors_of(parse_yaml("? [a]\n: 1\n", "f.yaml")) ==
        std::vector<std::string>{"f.yaml:1:3: error: keys must be plain strings (not lists, mappings or null); quote "
                                 "the key"});
}

TEST_CASE("yaml_tree: alias bombs are stopped") {
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) text += (j ? ", *a" : "*a") + std::to_string(i - 1);
    text += "]\n";
  }
  const auto doc = parse_yaml(text, "f.yaml");
  REQUIRE(doc.errors.size() == 1);
  CHECK(doc.errors[0].message == "aliases expand to more than 1000000 nodes; use fewer nested aliases");
  CHECK(doc.errors[0].line == 6);
  CHECK(doc.root.is_null());
}
