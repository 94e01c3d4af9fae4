#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gpurun::util {

// Parses a duration: plain seconds ("90", "1.5"), or numbers with units s, m, h, d, optionally
// combined ("1h30m", "500ms"). Returns nullopt for anything else, negative or empty input.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
// Short human form of a duration: "45s", "12m", "2h", "1h30m", "1.5s".
std::string format_duration(std::chrono::milliseconds duration);
// Parses a memory size: "16GiB", "16GB", "512MiB", "512M" (binary), "2T"; a plain number is MiB
// (as Modal's memory= and Slurm's --mem). Returns bytes, or nullopt when malformed.
std::optional<std::uint64_t> parse_size(std::string_view text);
// Short human form of a byte count in binary units: "16GiB", "1.5MiB", "512B".
std::string format_size(std::uint64_t bytes);

}  // namespace gpurun::util
