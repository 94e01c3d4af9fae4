#pragma once

// A pod's log (the API's `timestamps=true` text: "<RFC 3339 time> <line>\n" per line) turned into
// gpurun's record format (cloud/state/logs.hpp): the API's write times become the records' times,
// secret values are masked by the same stream masker as every backend's (LogEncoder).

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/state/logs.hpp"

namespace gpurun::cloud {

// One attempt's pod log as records, fetched piece by piece: the whole log first, then the rest
// from since_ms() on (the API's sinceTime), whose reply repeats the lines of that second that were
// taken already; those are skipped.
class PodLogRecords {
 public:
  PodLogRecords(int attempt, std::vector<std::string> secrets);

  // Takes a reply of the pod log API (timestamps=true) fetched with sinceTime since_ms() (the
  // whole log while that is nullopt). Its complete lines not taken before become stdout records
  // (the API merges stdout and stderr) stamped with their time (`fallback_ms` without one), secret
  // values masked across lines. With `final` (the container ended: the reply holds the rest) an
  // unterminated last line becomes a fragment and nothing is held back; later replies are ignored.
  void take(std::string_view reply, std::int64_t fallback_ms, bool final);
  // The sinceTime for the next fetch: the whole second of the last line taken (the API server
  // passes whole seconds on to the kubelet); nullopt before the first line.
  std::optional<std::int64_t> since_ms() const { return since_ms_; }
  // Moves out the records built so far.
  std::string take_records();
  // True once a `final` reply was taken.
  bool ended() const { return ended_; }

 private:
  void take_line(std::string_view raw, bool line_end, std::int64_t fallback_ms);

  LogEncoder encoder_;
  // Each line (8+ characters) of the multi-line values, masked again in the records: the API
  // merges stdout and stderr, so a stderr line may land inside a multi-line value written to stdout.
  std::vector<std::string> value_lines_;
  std::optional<std::int64_t> since_ms_;
  std::multiset<std::string> boundary_;  // lines taken (with their time) from since_ms_ on
  std::int64_t last_ms_ = 0;
  bool ended_ = false;
};

// One marker record ("<ms> <attempt> m <text>\n"), newlines in `text` turned into spaces.
std::string marker_record(std::int64_t unix_ms, int attempt, std::string_view text);

}  // namespace gpurun::cloud
