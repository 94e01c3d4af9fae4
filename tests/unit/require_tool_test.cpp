#include <doctest/doctest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "tests/unit/require_tool.hpp"

TEST_CASE("require_tool: an installed tool is there; a missing one skips outside the test command") {
  const char* old = std::getenv("GPURUN_REQUIRE_TOOLS");
  const std::optional<std::string> saved = old != nullptr ? std::optional<std::string>(old) : std::nullopt;
  ::unsetenv("GPURUN_REQUIRE_TOOLS");
  CHECK(gpurun::test::require_tool("sh", "dash"));
  CHECK_FALSE(gpurun::test::require_tool("gpurun-no-such-tool", "nothing"));  // a MESSAGE, no failure
  if (saved) ::setenv("GPURUN_REQUIRE_TOOLS", saved->c_str(), 1);
}
