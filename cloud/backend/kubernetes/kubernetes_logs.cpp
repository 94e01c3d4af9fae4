#include "cloud/backend/kubernetes/kubernetes_logs.hpp"

#include <fmt/format.h>

#include "cloud/backend/kubernetes/kubernetes_objects.hpp"
#include "cloud/state/logs.hpp"

namespace gpurun::cloud {

namespace {

// One line of the API's text (without its newline) -> a record of `kind`.
void append_line(std::string_view line, int attempt, std::int64_t fallback_ms, char kind, std::string& out) {
  std::int64_t ms = fallback_ms;
  if (auto space = line.find(' '); space != std::string_view::npos) {
    if (auto parsed = parse_rfc3339_ms(line.substr(0, space))) {
      ms = *parsed;
      line.remove_prefix(space + 1);
    }
  }
  // Lines longer than a record holds are split into fragments, as LogWriter does.
  while (line.size() > max_record_text) {
    out += fmt::format("{} {} {} ", ms, attempt, static_cast<char>(kind - 'a' + 'A'));
    out.append(line.substr(0, max_record_text));
    out += '\n';
    line.remove_prefix(max_record_text);
  }
  out += fmt::format("{} {} {} ", ms, attempt, kind);
  out.append(line);
  out += '\n';
}

}  // namespace

std::size_t append_pod_log_records(std::string_view text, int attempt, std::int64_t fallback_ms, bool final,
                                   std::string& out) {
  std::size_t used = 0;
  while (used < text.size()) {
    auto newline = text.find('\n', used);
    if (newline == std::string_view::npos) {
      if (!final) break;
      append_line(text.substr(used), attempt, fallback_ms, 'O', out);
      return text.size();
    }
    append_line(text.substr(used, newline - used), attempt, fallback_ms, 'o', out);
    used = newline + 1;
  }
  return used;
}

std::string marker_record(std::int64_t unix_ms, int attempt, std::string_view text) {
  std::string clean(text);
  for (char& c : clean) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return fmt::format("{} {} m {}\n", unix_ms, attempt, clean);
}

}  // namespace gpurun::cloud
