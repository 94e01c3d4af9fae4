#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>

#include "util/clock.hpp"

using namespace gpurun::util;

TEST_CASE("system_clock tells the time of std::chrono::system_clock in ms since the epoch") {
  const auto expected =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(std::llabs(system_clock().now_unix_ms() - expected) < 1000);
  CHECK(std::llabs(now_unix_ms() - expected) < 1000);
}

TEST_CASE("ManualClock moves only when told to") {
  ManualClock clock(1000);
  const Clock& as_clock = clock;
  CHECK(as_clock.now_unix_ms() == 1000);
  CHECK(as_clock.now_unix_ms() == 1000);
  clock.advance(std::chrono::milliseconds(250));
  CHECK(as_clock.now_unix_ms() == 1250);
  clock.set(42);
  CHECK(as_clock.now_unix_ms() == 42);
}
