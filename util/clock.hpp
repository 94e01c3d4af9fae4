#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace gpurun::util {

// Milliseconds since the Unix epoch, now, from the system clock.
std::int64_t now_unix_ms();

// A source of wall-clock time. Code that makes ids or stamps records takes one, so that tests
// can move time on instead of sleeping; production code uses system_clock().
class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch, now.
  virtual std::int64_t now_unix_ms() const = 0;
};

// The real time (std::chrono::system_clock).
class SystemClock final : public Clock {
 public:
  std::int64_t now_unix_ms() const override { return util::now_unix_ms(); }
};

// The process's SystemClock: the default wherever a Clock is taken.
const Clock& system_clock();

// A clock that moves only when told to (tests). Safe to read and move from several threads.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t start_unix_ms = 1'700'000'000'000) : now_(start_unix_ms) {}
  std::int64_t now_unix_ms() const override { return now_.load(); }
  // Moves the time on by `step`.
  void advance(std::chrono::milliseconds step) { now_ += step.count(); }
  // Sets the time to `unix_ms`.
  void set(std::int64_t unix_ms) { now_ = unix_ms; }

 private:
  std::atomic<std::int64_t> now_;
};

}  // namespace gpurun::util
