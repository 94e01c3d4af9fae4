#pragma once

#include <string>
#include <vector>

namespace gpurun::util {

// One problem in a user-written file (manifest or config), with a 1-based position.
// `path` is the dotted key path ("functions.train.gpu"); empty when the problem has none.
struct Diagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string path;
  std::string message;
};

// "file:line:col: error: path: message" (path and its ": " omitted when empty).
std::string format_diagnostic(const Diagnostic& diagnostic);

// Formats every diagnostic, one per line, sorted by position (stable), no trailing newline.
std::string format_diagnostics(std::vector<Diagnostic> diagnostics);

}  // namespace gpurun::util
