#include "util/units.hpp"

#include <cmath>
#include <fmt/format.h>

#include "util/strings.hpp"

namespace gpurun::util {

namespace {

// Reads a non-negative decimal number at the front of `text` and removes it.
std::optional<double> take_number(std::string_view& text) {
  std::size_t i = 0;
  bool digits = false;
  bool dot = false;
  while (i < text.size()) {
    const char c = text[i];
    if (c >= '0' && c <= '9') {
      digits = true;
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      break;
    }
    ++i;
  }
  if (!digits) return std::nullopt;
  const std::string number(text.substr(0, i));
  text.remove_prefix(i);
  return std::stod(number);
}

std::string_view take_unit(std::string_view& text) {
  std::size_t i = 0;
  while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
  const auto unit = text.substr(0, i);
  text.remove_prefix(i);
  return unit;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  text = trim(text);
  if (text.empty()) return std::nullopt;
  double total_ms = 0;
  bool first = true;
  while (!text.empty()) {
    auto number = take_number(text);
    if (!number) return std::nullopt;
    const auto unit = to_lower(take_unit(text));
    double scale = 0;
    if (unit.empty()) {
      if (!first || !text.empty()) return std::nullopt;
      scale = 1000;
    } else if (unit == "ms") {
      scale = 1;
    } else if (unit == "s" || unit == "sec" || unit == "secs") {
      scale = 1000;
    } else if (unit == "m" || unit == "min" || unit == "mins") {
      scale = 60'000;
    } else if (unit == "h" || unit == "hr" || unit == "hrs") {
      scale = 3'600'000;
    } else if (unit == "d") {
      scale = 86'400'000;
    } else {
      return std::nullopt;
    }
    total_ms += *number * scale;
    first = false;
  }
  if (total_ms > 1e15) return std::nullopt;
  return std::chrono::milliseconds(static_cast<long long>(std::llround(total_ms)));
}

std::string format_duration(std::chrono::milliseconds duration) {
  const long long ms = duration.count();
  if (ms % 1000 != 0) return fmt::format("{:g}s", static_cast<double>(ms) / 1000.0);
  long long s = ms / 1000;
  if (s < 60 || s % 60 != 0) {
    if (s >= 3600 && s % 60 == 0) {
      return fmt::format("{}h{}m", s / 3600, (s % 3600) / 60);
    }
    return fmt::format("{}s", s);
  }
  const long long m = s / 60;
  if (m < 60) return fmt::format("{}m", m);
  if (m % 60 == 0) return fmt::format("{}h", m / 60);
  return fmt::format("{}h{}m", m / 60, m % 60);
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  text = trim(text);
  auto number = take_number(text);
  if (!number) return std::nullopt;
  const auto unit = to_lower(trim(text));
  double scale = 0;
  constexpr double kib = 1024.0;
  if (unit.empty()) {
    scale = kib * kib;
  } else if (unit == "b") {
    scale = 1;
  } else if (unit == "k" || unit == "kib") {
    scale = kib;
  } else if (unit == "kb") {
    scale = 1e3;
  } else if (unit == "m" || unit == "mib") {
    scale = kib * kib;
  } else if (unit == "mb") {
    scale = 1e6;
  } else if (unit == "g" || unit == "gib") {
    scale = kib * kib * kib;
  } else if (unit == "gb") {
    scale = 1e9;
  } else if (unit == "t" || unit == "tib") {
    scale = kib * kib * kib * kib;
  } else if (unit == "tb") {
    scale = 1e12;
  } else {
    return std::nullopt;
  }
  const double bytes = *number * scale;
  if (bytes > 1e18) return std::nullopt;
  return static_cast<std::uint64_t>(std::llround(bytes));
}

std::string format_size(std::uint64_t bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(units)) {
    value /= 1024.0;
    ++unit;
  }
  if (unit == 0) return fmt::format("{}B", bytes);
  // Three significant digits, but never an exponent (1000-1023 of a unit stay whole numbers).
  if (value >= 100.0) return fmt::format("{:.0f}{}", value, units[unit]);
  return fmt::format("{:.3g}{}", value, units[unit]);
}

}  // namespace gpurun::util
