#pragma once

// A pod's log (the API's `timestamps=true` text: "<RFC 3339 time> <line>\n" per line) turned into
// gpurun's record format (cloud/state/logs.hpp): the API's write times become the records' times.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gpurun::cloud {

// Appends the records of the complete lines of `text` to `out` as attempt `attempt`'s stdout
// (the pod log API merges stdout and stderr); a line without its time gets `fallback_ms`. With
// `final`, an unterminated last line is a fragment record; else it is left out. Every occurrence
// of a `secrets` value in a line's text becomes "***" (a multi-line value: each of its lines).
// Returns the bytes of `text` used (the complete lines, or all of it with `final`).
std::size_t append_pod_log_records(std::string_view text, int attempt, std::int64_t fallback_ms, bool final,
                                   std::string& out, const std::vector<std::string>& secrets = {});

// One marker record ("<ms> <attempt> m <text>\n"), newlines in `text` turned into spaces.
std::string marker_record(std::int64_t unix_ms, int attempt, std::string_view text);

}  // namespace gpurun::cloud
