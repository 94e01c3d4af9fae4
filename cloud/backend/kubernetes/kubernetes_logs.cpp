#include "cloud/backend/kubernetes/kubernetes_logs.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "cloud/backend/kubernetes/kubernetes_objects.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

// The time of an API log line ("<RFC 3339 time> <text>") and where its text starts.
std::optional<std::int64_t> line_time(std::string_view raw, std::size_t& text_start) {
  text_start = 0;
  const auto space = raw.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  auto parsed = parse_rfc3339_ms(raw.substr(0, space));
  if (parsed) text_start = space + 1;
  return parsed;
}

std::int64_t whole_second(std::int64_t unix_ms) { return unix_ms - ((unix_ms % 1000) + 1000) % 1000; }

}  // namespace

PodLogRecords::PodLogRecords(int attempt, std::vector<std::string> secrets) : encoder_(attempt, secrets) {
  for (const auto& value : secrets) {
    if (value.find('\n') == std::string::npos) continue;
    for (const auto& line : util::split(value, '\n')) {
      std::string_view piece = util::trim(line);
      if (piece.size() >= 8) value_lines_.emplace_back(piece);
    }
  }
  // Longer first, so that a line inside a longer one does not split it.
  std::sort(value_lines_.begin(), value_lines_.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
}

void PodLogRecords::take_line(std::string_view raw, bool line_end, std::int64_t fallback_ms) {
  std::size_t text_start = 0;
  const auto time = line_time(raw, text_start);
  const std::int64_t ms = time.value_or(fallback_ms);
  last_ms_ = ms;
  encoder_.write(LogStream::out, raw.substr(text_start), ms);
  if (!line_end) return;
  encoder_.write(LogStream::out, "\n", ms);
  if (!time) return;
  const std::int64_t second = whole_second(*time);
  if (since_ms_ && second < *since_ms_) return;  // an older line (streams interleaved): never repeated
  if (!since_ms_ || second > *since_ms_) {
    since_ms_ = second;
    for (auto it = boundary_.begin(); it != boundary_.end();) {
      std::size_t unused = 0;
      const auto at = line_time(*it, unused);
      it = at && whole_second(*at) < second ? boundary_.erase(it) : std::next(it);
    }
  }
  boundary_.emplace(raw);
}

void PodLogRecords::take(std::string_view reply, std::int64_t fallback_ms, bool final) {
  if (ended_) return;
  // The reply starts with the lines from since_ms_ on that were taken already: each skipped once.
  std::multiset<std::string> repeated = boundary_;
  std::size_t used = 0;
  while (used < reply.size()) {
    const auto newline = reply.find('\n', used);
    if (newline == std::string_view::npos) {
      if (final) take_line(reply.substr(used), false, fallback_ms);
      break;
    }
    const std::string_view raw = reply.substr(used, newline - used);
    used = newline + 1;
    if (auto seen = repeated.find(std::string(raw)); seen != repeated.end()) {
      repeated.erase(seen);
      continue;
    }
    take_line(raw, true, fallback_ms);
  }
  if (final) {
    encoder_.end(last_ms_ != 0 ? last_ms_ : fallback_ms);
    ended_ = true;
  }
}

std::string PodLogRecords::take_records() {
  std::string records = encoder_.records();
  encoder_.clear_records();
  for (const auto& piece : value_lines_) {
    for (auto at = records.find(piece); at != std::string::npos; at = records.find(piece, at + 3)) {
      records.replace(at, piece.size(), "***");
    }
  }
  return records;
}

std::string marker_record(std::int64_t unix_ms, int attempt, std::string_view text) {
  std::string clean(text);
  for (char& c : clean) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return fmt::format("{} {} m {}\n", unix_ms, attempt, clean);
}

}  // namespace gpurun::cloud
