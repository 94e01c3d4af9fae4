#pragma once

#include <string>

#include "util/files.hpp"

namespace gpurun::test {

// The whole file at `path`, or "" when it cannot be read (so a CHECK against the expected text
// fails, and a poll for text that is not there yet goes on).
inline std::string read_text(const std::string& path) {
  int error_number = 0;
  return util::read_file(path, error_number).value_or("");
}

}  // namespace gpurun::test
