// FakeClock: the Clock of the unit tests. Time stands still until the test
// moves it; wall and boot time move together unless a test sets the wall
// clock alone (a clock jump).
#pragma once

#include <cstdint>

#include "common/clock.hpp"

namespace phonefarm {

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

}  // namespace phonefarm
