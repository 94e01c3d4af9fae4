#include "cloud/backend/kubernetes/kubernetes_logs.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "cloud/backend/kubernetes/kubernetes_objects.hpp"
#include "cloud/state/logs.hpp"

namespace gpurun::cloud {

namespace {

// The pieces of the secret values to hide in one line: each line of each value.
std::vector<std::string> secret_lines(const std::vector<std::string>& secrets) {
  std::vector<std::string> pieces;
  for (const auto& secret : secrets) {
    std::string_view rest = secret;
    while (!rest.empty()) {
      auto newline = rest.find('\n');
      std::string_view piece = rest.substr(0, newline);
      if (!piece.empty() && piece.back() == '\r') piece.remove_suffix(1);
      if (!piece.empty()) pieces.emplace_back(piece);
      if (newline == std::string_view::npos) break;
      rest.remove_prefix(newline + 1);
    }
  }
  // Longer pieces first, so that a short one inside a long one does not split it.
  std::sort(pieces.begin(), pieces.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return pieces;
}

std::string masked(std::string_view text, const std::vector<std::string>& pieces) {
  std::string line(text);
  for (const auto& piece : pieces) {
    for (auto at = line.find(piece); at != std::string::npos; at = line.find(piece, at + 3)) line.replace(at, piece.size(), "***");
  }
  return line;
}

// One line of the API's text (without its newline) -> a record of `kind`.
void append_line(std::string_view raw, int attempt, std::int64_t fallback_ms, char kind, std::string& out,
                 const std::vector<std::string>& pieces) {
  std::int64_t ms = fallback_ms;
  if (auto space = raw.find(' '); space != std::string_view::npos) {
    if (auto parsed = parse_rfc3339_ms(raw.substr(0, space))) {
      ms = *parsed;
      raw.remove_prefix(space + 1);
    }
  }
  const std::string text = masked(raw, pieces);
  std::string_view line = text;
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
                                   std::string& out, const std::vector<std::string>& secrets) {
  const auto pieces = secret_lines(secrets);
  std::size_t used = 0;
  while (used < text.size()) {
    auto newline = text.find('\n', used);
    if (newline == std::string_view::npos) {
      if (!final) break;
      append_line(text.substr(used), attempt, fallback_ms, 'O', out, pieces);
      return text.size();
    }
    append_line(text.substr(used, newline - used), attempt, fallback_ms, 'o', out, pieces);
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
