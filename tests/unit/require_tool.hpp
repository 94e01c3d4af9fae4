#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

namespace gpurun::test {

// Whether the real program `tool` (from Debian package `package`) is installed. When it is not,
// the test FAILs under the test command (GPURUN_REQUIRE_TOOLS=1, set for ctest by
// tests/CMakeLists.txt), and elsewhere is skipped with a visible message. Use as
//   if (!test::require_tool("htpasswd", "apache2-utils")) return;
inline bool require_tool(const std::string& tool, const std::string& package) {
  if (std::system(("command -v '" + tool + "' >/dev/null 2>&1").c_str()) == 0) return true;
  const char* required = std::getenv("GPURUN_REQUIRE_TOOLS");
  if (required != nullptr && std::string(required) == "1") {
    FAIL_CHECK(tool << " is missing and GPURUN_REQUIRE_TOOLS=1 requires it (apt-get install " << package << ")");
  } else {
    MESSAGE("skipped: " << tool << " is missing (apt-get install " << package << ")");
  }
  return false;
}

}  // namespace gpurun::test
