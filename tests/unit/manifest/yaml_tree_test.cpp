#include <doctest/doctest.h>

#include <chrono>
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
  CHECK(util::format_diagnostic(doc.errors[0]) ==
        "f.yaml:6:40: error: a5[6]: the file expands to more than 1000000 nodes (anchors and aliases count each copy); "
        "use fewer or smaller anchors and aliases");
  CHECK(doc.root.is_null());
}

namespace {

// Milliseconds `parse` takes.
template <typename F>
long long millis(F&& parse) {
  const auto start = std::chrono::steady_clock::now();
  parse();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

// Finding 1 of issue 14: the guard counted nodes, so one 1 MiB scalar aliased 5,000 times took ~5 GB.
TEST_CASE("yaml_tree: aliases of a large scalar stop at the text limit, at the alias that crosses it") {
  std::string text = "big: &big \"" + std::string(1u << 20, 'x') + "\"\nmany: [";
  for (int i = 0; i < 5000; ++i) text += i == 0 ? "*big" : ", *big";
  text += "]\n";
  YamlDocument doc;
  CHECK(millis([&] { doc = parse_yaml(text, "f.yaml"); }) < 10000);
  // 1 MiB read + 1 MiB anchor copy + 13 aliases + the keys = 15 MiB + 7 bytes; the 14th alias crosses 16 MiB.
  CHECK(errors_of(doc) == std::vector<std::string>{
                              "f.yaml:2:86: error: many[13]: the file's values expand to more than 16 MiB of text "
                              "(anchors and aliases count each copy); use fewer or smaller anchors and aliases"});
  CHECK(doc.root.is_null());
}

// Finding 2: every anchor deep-copied its subtree; nested anchors without an alias went quadratic.
TEST_CASE("yaml_tree: nested anchors without aliases stop at the node limit") {
  // 30 levels of 10,000 items each (300,000 nodes, 900 KB); the anchors' copies add 4.65 million.
  std::string text = "a: ";
  for (int level = 0; level < 30; ++level) {
    text += "&l" + std::to_string(level) + " [";
    for (int i = 0; i < 10'000; ++i) text += "x, ";
  }
  text += "x" + std::string(30, ']') + "\n";
  YamlDocument doc;
  CHECK(millis([&] { doc = parse_yaml(text, "f.yaml"); }) < 10000);
  REQUIRE(doc.errors.size() == 1);
  CHECK(doc.errors[0].message ==
        "the file expands to more than 1000000 nodes (anchors and aliases count each copy); use fewer or smaller "
        "anchors and aliases");
  CHECK(doc.root.is_null());
  // A few anchors of a real manifest cost nothing near the limit.
  CHECK(parse_yaml("d: &d {gpu: T4}\nf: {<<: *d}\ng: {<<: *d}\n", "f.yaml").errors.empty());
}

// Finding 3: 100,000-deep nesting took 26 s inside libyaml.
TEST_CASE("yaml_tree: nesting deeper than the limit stops at the first list or mapping past it") {
  const std::string flow = "a: " + std::string(100'000, '[') + std::string(100'000, ']') + "\n";
  YamlDocument doc;
  CHECK(millis([&] { doc = parse_yaml(flow, "f.yaml"); }) < 5000);
  // The root mapping is level 1: the 64th '[' (column 67) is level 65.
  std::string path = "a";
  for (int i = 0; i < 63; ++i) path += "[0]";
  CHECK(errors_of(doc) == std::vector<std::string>{"f.yaml:1:67: error: " + path +
                                                   ": lists and mappings are nested more than 64 deep; no manifest or "
                                                   "config needs that, flatten this part"});
  std::string block;
  for (int i = 0; i < 1000; ++i) block += std::string(2 * i, ' ') + "k:\n";
  doc = parse_yaml(block, "f.yaml");
  REQUIRE(doc.errors.size() == 1);
  CHECK(doc.errors[0].line == 65);
  CHECK(doc.errors[0].column == 129);
  std::string ok;
  for (int i = 0; i < 63; ++i) ok += std::string(2 * i, ' ') + "k:\n";
  CHECK(parse_yaml(ok, "f.yaml").errors.empty());
}

// Finding 4: a 200 MB manifest took 13 s and 3.7 GB.
TEST_CASE("yaml_tree: input over the size limit is an error at the byte that crosses it") {
  std::string text;
  while (text.size() <= max_yaml_bytes) text += "# comment\n";  // 10 bytes a line
  YamlDocument doc;
  CHECK(millis([&] { doc = parse_yaml(text, "f.yaml"); }) < 5000);
  // Byte 8 MiB = 8388608 = line 838861 (0-based 838860 lines of 10 bytes), column 9.
  CHECK(errors_of(doc) ==
        std::vector<std::string>{"f.yaml:838861:9: error: the file is larger than 8 MiB; no manifest or config needs "
                                 "that, split it"});
  CHECK(parse_yaml(text.substr(0, max_yaml_bytes), "f.yaml").errors.empty());
}

// Finding 5: NUL bytes and invalid UTF-8 were reported at 1:1.
TEST_CASE("yaml_tree: reader errors are positioned at the offending byte") {
  using namespace std::string_literals;
  CHECK(errors_of(parse_yaml("a: 1\nb: 2\nc: 3\nd: 'x\0y'\n"s, "f.yaml")) ==
        std::vector<std::string>{"f.yaml:4:6: error: invalid YAML: control characters are not allowed (byte 0x00); the "
                                 "file must be UTF-8 text without control characters"});
  CHECK(errors_of(parse_yaml("a: 1\nb: 2\nc: 3\nd: \xc3\xa9\xff\n", "f.yaml")) ==
        std::vector<std::string>{"f.yaml:4:5: error: invalid YAML: invalid leading UTF-8 octet (byte 0xFF); the file "
                                 "must be UTF-8 text without control characters"});
  CHECK(position_of("ab\ncd\r\nef\rg\xc3\xa9h", 13) == std::pair<int, int>{4, 3});
}
