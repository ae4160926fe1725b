// Escalation deadlines: immune to wall-clock jumps, the original deadline
// after a restart on the same boot, the wall clock after a reboot, zero once
// passed.
#include "agent/cancel/escalation_deadline.hpp"

#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.hpp"

namespace phonefarm::cancel {
namespace {

using std::chrono::milliseconds;

TEST(EscalationDeadline, StoredOnBothClocks) {
  FakeClock clock(1'800'000'000'000, 5'000'000'000);
  auto d = makeDeadline(clock, "boot-a", 10);
  EXPECT_EQ(d.force_at, 1'800'000'010'000);
  EXPECT_EQ(d.force_at_boot_ns, 15'000'000'000);
  EXPECT_EQ(d.boot_id, "boot-a");
  EXPECT_EQ(timeLeft(d, clock, "boot-a"), milliseconds(10'000));
}

TEST(EscalationDeadline, WallClockJumpsDoNotMoveIt) {
  FakeClock clock(1'800'000'000'000, 5'000'000'000);
  auto d = makeDeadline(clock, "boot-a", 10);
  clock.setWallMs(1'800'000'000'000 + 3'600'000);  // NTP steps an hour ahead
  EXPECT_EQ(timeLeft(d, clock, "boot-a"), milliseconds(10'000));
  clock.setWallMs(1'700'000'000'000);  // or far back
  EXPECT_EQ(timeLeft(d, clock, "boot-a"), milliseconds(10'000));
}

TEST(EscalationDeadline, RestartOnTheSameBootKeepsTheOriginalDeadline) {
  FakeClock clock(1'800'000'000'000, 5'000'000'000);
  auto stored = makeDeadline(clock, "boot-a", 10);
  clock.advanceMs(4'000);  // the agent was down for 4 s
  EXPECT_EQ(timeLeft(stored, clock, "boot-a"), milliseconds(6'000));
  clock.advanceMs(7'000);  // restarted after the deadline: escalate at once
  EXPECT_EQ(timeLeft(stored, clock, "boot-a"), milliseconds(0));
}

TEST(EscalationDeadline, AfterARebootTheWallClockDecides) {
  FakeClock clock(1'800'000'000'000, 5'000'000'000);
  auto stored = makeDeadline(clock, "boot-a", 60);
  FakeClock rebooted(1'800'000'020'000, 1'000'000'000);  // 20 s later, boot clock restarted
  EXPECT_EQ(timeLeft(stored, rebooted, "boot-b"), milliseconds(40'000));
  EXPECT_EQ(timeLeft(stored, rebooted, ""), milliseconds(40'000));
}

TEST(EscalationDeadline, RoundsUpToWholeMilliseconds) {
  FakeClock clock(1'800'000'000'000, 5'000'000'000);
  EscalationDeadline d{1'800'000'000'001, 5'000'000'001, "boot-a"};
  EXPECT_EQ(timeLeft(d, clock, "boot-a"), milliseconds(1));
}

TEST(EscalationDeadline, BootIdIsReadable) {
  const std::string id = readBootId();
  EXPECT_EQ(id.size(), 36u) << id;  // a UUID on Linux
}

}  // namespace
}  // namespace phonefarm::cancel
