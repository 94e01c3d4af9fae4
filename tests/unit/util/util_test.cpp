#include <doctest/doctest.h>

#include "util/diagnostic.hpp"
#include "util/strings.hpp"
#include "util/units.hpp"

using namespace gpurun::util;
using namespace std::chrono_literals;

TEST_CASE("did_you_mean suggests close names only") {
  CHECK(did_you_mean("gpus", {"command", "gpu", "image"}) == std::optional<std::string>("gpu"));
  CHECK(did_you_mean("imgae", {"command", "gpu", "image"}) == std::optional<std::string>("image"));
  CHECK(did_you_mean("zzzzzz", {"command", "gpu", "image"}) == std::nullopt);
  CHECK(did_you_mean("A200", {"T4", "A10G", "A100"}) == std::optional<std::string>("A100"));
}

TEST_CASE("parse_duration accepts seconds and units") {
  CHECK(parse_duration("30s") == 30s);
  CHECK(parse_duration("10m") == 10min);
  CHECK(parse_duration("2h") == 2h);
  CHECK(parse_duration("90") == 90s);
  CHECK(parse_duration("1h30m") == 90min);
  CHECK(parse_duration("500ms") == 500ms);
  CHECK(parse_duration("1.5s") == 1500ms);
  CHECK_FALSE(parse_duration("").has_value());
  CHECK_FALSE(parse_duration("-1s").has_value());
  CHECK_FALSE(parse_duration("2 weeks").has_value());
  CHECK_FALSE(parse_duration("10x").has_value());
  CHECK_FALSE(parse_duration("5 5").has_value());
  CHECK(format_duration(90min) == "1h30m");
  CHECK(format_duration(45s) == "45s");
  CHECK(format_duration(2h) == "2h");
}

TEST_CASE("parse_size understands binary and decimal units") {
  CHECK(parse_size("16GiB") == 16ULL << 30);
  CHECK(parse_size("16G") == 16ULL << 30);
  CHECK(parse_size("16GB") == 16'000'000'000ULL);
  CHECK(parse_size("512") == 512ULL << 20);
  CHECK(parse_size("1.5MiB") == 1572864ULL);
  CHECK_FALSE(parse_size("lots").has_value());
  CHECK_FALSE(parse_size("16 parsecs").has_value());
  CHECK(format_size(16ULL << 30) == "16GiB");
  CHECK(format_size(1'000'000) == "977KiB");
  CHECK(format_size(1'048'000) == "1023KiB");
  CHECK(format_size(1536) == "1.5KiB");
}

TEST_CASE("shell_quote keeps words verbatim") {
  CHECK(shell_quote("plain") == "plain");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("$(rm -rf /)") == "'$(rm -rf /)'");
  CHECK(shell_quote("") == "''");
}

TEST_CASE("diagnostics format as file:line:col") {
  CHECK(format_diagnostic({"gpurun.yaml", 14, 10, "functions.train.gpu", "unknown GPU type 'A200'"}) ==
        "gpurun.yaml:14:10: error: functions.train.gpu: unknown GPU type 'A200'");
  CHECK(format_diagnostics({{"f", 3, 1, "", "b"}, {"f", 1, 2, "x", "a"}}) == "f:1:2: error: x: a\nf:3:1: error: b");
}
