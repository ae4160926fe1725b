// Clock: the only source of time in the logic, so tests can set it
// (STYLE.md: no real-time sources in logic). Wall time is what the API shows;
// the boot clock is what deadlines that must survive wall-clock jumps use.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace phonefarm {

// Milliseconds since the Unix epoch, UTC.
using WallMs = std::int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual WallMs wallNowMs() const = 0;
  // CLOCK_BOOTTIME in nanoseconds: monotonic, counts suspend, reset at boot.
  virtual std::int64_t bootNowNs() const = 0;
};

class SystemClock final : public Clock {
 public:
  WallMs wallNowMs() const override;
  std::int64_t bootNowNs() const override;
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(WallMs wall = 1'795'000'000'000, std::int64_t boot = 1'000'000'000) : wall_(wall), boot_(boot) {}
  WallMs wallNowMs() const override { return wall_; }
  std::int64_t bootNowNs() const override { return boot_; }
  void advanceMs(std::int64_t ms) {
    wall_ += ms;
    boot_ += ms * 1'000'000;
  }
  void setWallMs(WallMs wall) { wall_ = wall; }

 private:
  WallMs wall_;
  std::int64_t boot_;
};

// RFC 3339 UTC with milliseconds: "2026-11-28T10:26:51.123Z".
std::string formatRfc3339(WallMs ms);

}  // namespace phonefarm
