#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "util/result.hpp"

namespace gpurun::util {

// The whole file at `path`, or nullopt with `error_number` set to the errno of the failure (for
// callers that word their own message or treat a missing file as normal).
std::optional<std::string> read_file(const std::string& path, int& error_number);
// The whole file at `path`. The error reads "cannot read PATH: <strerror>" with exit code `code`.
Result<std::string> read_file(const std::string& path, ExitCode code = ExitCode::backend);

// Writes `bytes` to `path` atomically: into a new temporary file beside it, then renamed over it,
// so readers see the old file or the new one, never a part. The error reads
// "cannot write PATH: <why>" (exit code backend); no temporary file is left behind.
Result<void> write_file_atomically(const std::string& path, std::string_view bytes);

}  // namespace gpurun::util
