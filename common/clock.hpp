// Clock: the only source of time in the logic, so tests can set it
// (docs/design.md, "Time": no real-time sources in logic). Wall time is what the API shows;
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

// RFC 3339 UTC with milliseconds: "2026-11-28T10:26:51.123Z".
std::string formatRfc3339(WallMs ms);

}  // namespace phonefarm
