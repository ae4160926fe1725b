// EscalationDeadline: when a soft_then_force cancel escalates. The deadline is
// stored twice (docs/api.md shows the wall-clock time; the timer uses
// CLOCK_BOOTTIME with the boot id), so a wall-clock jump does not move it and
// an agent restarted on the same boot fires at the original deadline, not
// after a fresh window. After a reboot the boot clock means nothing and the
// wall-clock time is used.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.hpp"

namespace phonefarm::cancel {

struct EscalationDeadline {
  WallMs force_at = 0;                // wall clock, as the API shows it
  std::int64_t force_at_boot_ns = 0;  // CLOCK_BOOTTIME, valid on boot_id only
  std::string boot_id;
};

// now + force_after_seconds on both clocks.
EscalationDeadline makeDeadline(const Clock& clock, std::string boot_id, std::int64_t force_after_seconds);

// Time left until the deadline (zero when it has passed), measured on the
// boot clock when `current_boot_id` is the deadline's boot, else on the wall clock.
std::chrono::milliseconds timeLeft(const EscalationDeadline& deadline, const Clock& clock,
                                   std::string_view current_boot_id);

// /proc/sys/kernel/random/boot_id (a UUID that changes at every boot); "" if unreadable.
std::string readBootId();

}  // namespace phonefarm::cancel
