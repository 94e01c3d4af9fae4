#include "util/diagnostic.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace gpurun::util {

std::string format_diagnostic(const Diagnostic& d) {
  if (d.path.empty()) return fmt::format("{}:{}:{}: error: {}", d.file, d.line, d.column, d.message);
  return fmt::format("{}:{}:{}: error: {}: {}", d.file, d.line, d.column, d.path, d.message);
}

std::string format_diagnostics(std::vector<Diagnostic> diagnostics) {
  std::stable_sort(diagnostics.begin(), diagnostics.end(), [](const Diagnostic& a, const Diagnostic& b) {
    if (a.file != b.file) return false;
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  std::string out;
  for (const auto& d : diagnostics) {
    if (!out.empty()) out += '\n';
    out += format_diagnostic(d);
  }
  return out;
}

}  // namespace gpurun::util
