#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gpurun::util {

// ASCII lower-casing.
std::string to_lower(std::string_view text);
// ASCII upper-casing.
std::string to_upper(std::string_view text);
// Case-insensitive ASCII equality.
bool iequals(std::string_view a, std::string_view b);
// Text without leading and trailing blanks (space, tab, CR, LF).
std::string_view trim(std::string_view text);
// Splits on every occurrence of `separator`; empty fields are kept.
std::vector<std::string> split(std::string_view text, char separator);
// Levenshtein distance, case-insensitive.
std::size_t edit_distance(std::string_view a, std::string_view b);
// The closest candidate when it is close enough to be a likely typo (distance <= max(1, len/3),
// or a case-insensitive prefix match), else nullopt. Ties go to the earlier candidate.
std::optional<std::string> did_you_mean(std::string_view word, const std::vector<std::string>& candidates);
// "a, b or c" (English list with a final "or"/"and").
std::string join_list(const std::vector<std::string>& items, std::string_view last_separator = " or ");
// Joins with a separator.
std::string join(const std::vector<std::string>& items, std::string_view separator);
// Parses a whole string as a non-negative decimal integer (no sign, no blanks).
std::optional<long long> parse_uint(std::string_view text);
// Quotes a word for POSIX sh so that it is passed verbatim.
std::string shell_quote(std::string_view word);

}  // namespace gpurun::util
