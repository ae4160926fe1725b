// The cancel state machine: every transition of docs/api.md's cancel effects and
// the legacy item cancel, on hand-built processes.
#include "agent/cancel/cancel_plan.hpp"

#include <gtest/gtest.h>

namespace phonefarm::cancel {
namespace {

constexpr WallMs kNow = 1'800'000'000'000;

Process makeProcess(ProcessStatus status, std::vector<ItemStatus> items) {
  Process p;
  p.process_id = "p1";
  p.status = status;
  p.phone_id = "phone_01";
  p.account_id = "acc";
  p.capability_request_id = "p1";
  p.created_at = p.updated_at = kNow - 5000;
  for (std::size_t i = 0; i < items.size(); ++i) {
    QueueItem it;
    it.queue_item_id = "q" + std::to_string(i);
    it.position = static_cast<int>(i);
    it.status = items[i];
    it.command = {"/bin/true"};
    p.items.push_back(it);
  }
  return p;
}

CancelInput input(CancelStrategy s, std::int64_t force = 10) {
  return CancelInput{"operator requested stop", boost::json::object{{"system", "t"}}, s, force};
}

using IS = ItemStatus;
using Ids = std::vector<std::string>;

TEST(CancelPlan, QueuedProcessAllPendingCancelled) {
  auto p = makeProcess(ProcessStatus::kQueued, {IS::kPending, IS::kPending, IS::kPending});
  auto plan = planProcessCancel(p, input(CancelStrategy::kSoftThenForce), kNow);
  EXPECT_FALSE(plan.ignored_terminal);
  EXPECT_TRUE(plan.changed);
  EXPECT_EQ(plan.cancelled_item_ids, (Ids{"q0", "q1", "q2"}));
  EXPECT_TRUE(plan.active_item_ids.empty());
  EXPECT_EQ(plan.after.status, ProcessStatus::kCancelled);
  for (const auto& it : plan.after.items) {
    EXPECT_EQ(it.status, IS::kCancelled);
    EXPECT_EQ(it.ended_at, kNow);
  }
  EXPECT_EQ(plan.termination, TerminationStatus::kNotNeeded);
  EXPECT_EQ(plan.action, TerminationAction::kNone);
  EXPECT_EQ(plan.after.updated_at, kNow);
  ASSERT_TRUE(plan.after.cancel);
  EXPECT_EQ(plan.after.cancel->reason, "operator requested stop");
  EXPECT_EQ(plan.after.cancel->requested_at, kNow);
  EXPECT_FALSE(plan.after.cancel->force_at);
  EXPECT_EQ(plan.audit.outcome, "cancel_requested");
  EXPECT_EQ(plan.audit.termination_status, "not_needed");
  EXPECT_EQ(plan.audit.endpoint, "process");
  EXPECT_EQ(plan.audit.force_after_seconds, 10);
  EXPECT_EQ(plan.audit.requested_at, kNow);
}

TEST(CancelPlan, TerminalProcessesAreIgnored) {
  for (auto status : {ProcessStatus::kSucceeded, ProcessStatus::kFailed, ProcessStatus::kCancelled}) {
    auto p = makeProcess(status, {IS::kSucceeded, IS::kCancelled});
    auto plan = planProcessCancel(p, input(CancelStrategy::kHard), kNow);
    EXPECT_TRUE(plan.ignored_terminal);
    EXPECT_FALSE(plan.changed);
    EXPECT_EQ(plan.after.status, status);
    EXPECT_EQ(plan.after.updated_at, p.updated_at);
    EXPECT_FALSE(plan.after.cancel);
    EXPECT_TRUE(plan.cancelled_item_ids.empty());
    EXPECT_EQ(plan.termination, TerminationStatus::kNotNeeded);
    EXPECT_EQ(plan.audit.outcome, "ignored_terminal");
  }
}

TEST(CancelPlan, RunningBetweenItemsCancelsTheRest) {
  auto p = makeProcess(ProcessStatus::kRunning, {IS::kSucceeded, IS::kPending});
  auto plan = planProcessCancel(p, input(CancelStrategy::kSoft), kNow);
  EXPECT_EQ(plan.cancelled_item_ids, Ids{"q1"});
  EXPECT_EQ(plan.after.items[0].status, IS::kSucceeded);
  EXPECT_EQ(plan.after.status, ProcessStatus::kCancelled);
}

TEST(CancelPlan, SoftOnExecutingNotifiesAndGoesCancelling) {
  auto p = makeProcess(ProcessStatus::kRunning, {IS::kExecuting, IS::kPending});
  auto plan = planProcessCancel(p, input(CancelStrategy::kSoft), kNow);
  EXPECT_EQ(plan.cancelled_item_ids, Ids{"q1"});
  EXPECT_EQ(plan.active_item_ids, Ids{"q0"});
  EXPECT_EQ(plan.executing_item_id, "q0");
  EXPECT_EQ(plan.action, TerminationAction::kNotify);
  EXPECT_EQ(plan.termination, TerminationStatus::kRequested);
  EXPECT_EQ(plan.after.status, ProcessStatus::kCancelling);
  EXPECT_EQ(plan.after.items[0].status, IS::kExecuting);
  EXPECT_FALSE(plan.force_at);
}

TEST(CancelPlan, HardOnExecutingKills) {
  auto p = makeProcess(ProcessStatus::kRunning, {IS::kExecuting});
  auto plan = planProcessCancel(p, input(CancelStrategy::kHard), kNow);
  EXPECT_EQ(plan.action, TerminationAction::kKill);
  EXPECT_EQ(plan.termination, TerminationStatus::kIssued);
  EXPECT_EQ(plan.after.status, ProcessStatus::kCancelling);
}

TEST(CancelPlan, SoftThenForceSchedulesAtDeadline) {
  auto p = makeProcess(ProcessStatus::kRunning, {IS::kExecuting});
  auto plan = planProcessCancel(p, input(CancelStrategy::kSoftThenForce, 30), kNow);
  EXPECT_EQ(plan.action, TerminationAction::kNotifyAndSchedule);
  EXPECT_EQ(plan.termination, TerminationStatus::kScheduled);
  EXPECT_EQ(plan.force_at, kNow + 30'000);
  EXPECT_EQ(plan.after.cancel->force_at, kNow + 30'000);
}

TEST(CancelPlan, SoftThenForceZeroIsHard) {
  auto p = makeProcess(ProcessStatus::kRunning, {IS::kExecuting});
  auto plan = planProcessCancel(p, input(CancelStrategy::kSoftThenForce, 0), kNow);
  EXPECT_EQ(plan.action, TerminationAction::kKill);
  EXPECT_EQ(plan.termination, TerminationStatus::kIssued);
}

Process cancellingWith(CancelStrategy prior, std::optional<WallMs> force_at) {
  auto p = makeProcess(ProcessStatus::kCancelling, {IS::kExecuting, IS::kCancelled});
  p.cancel = CancelRecord{"first", prior, kNow - 1000, force_at, {}};
  return p;
}

TEST(CancelPlan, LaterCancelsOnlyEscalate) {
  const WallMs armed = kNow + 10'000;
  // An earlier deadline replaces the armed one.
  auto earlier = planProcessCancel(cancellingWith(CancelStrategy::kSoftThenForce, armed),
                                   input(CancelStrategy::kSoftThenForce, 5), kNow);
  EXPECT_EQ(earlier.action, TerminationAction::kReschedule);
  EXPECT_EQ(earlier.after.cancel->force_at, kNow + 5000);
  EXPECT_EQ(earlier.after.cancel->reason, "first");
  EXPECT_EQ(earlier.audit.outcome, "cancel_requested");
  // A later deadline changes nothing.
  auto later = planProcessCancel(cancellingWith(CancelStrategy::kSoftThenForce, armed),
                                 input(CancelStrategy::kSoftThenForce, 60), kNow);
  EXPECT_EQ(later.action, TerminationAction::kNone);
  EXPECT_FALSE(later.changed);
  EXPECT_EQ(later.force_at, armed);
  EXPECT_EQ(later.termination, TerminationStatus::kScheduled);
  EXPECT_EQ(later.audit.outcome, "cancel_requested");
  // Softer changes nothing.
  auto softer =
      planProcessCancel(cancellingWith(CancelStrategy::kSoftThenForce, armed), input(CancelStrategy::kSoft), kNow);
  EXPECT_EQ(softer.action, TerminationAction::kNone);
  EXPECT_EQ(softer.after.cancel->force_at, armed);
  // Hard kills now.
  auto hard =
      planProcessCancel(cancellingWith(CancelStrategy::kSoftThenForce, armed), input(CancelStrategy::kHard), kNow);
  EXPECT_EQ(hard.action, TerminationAction::kKill);
  EXPECT_EQ(hard.after.cancel->strategy, CancelStrategy::kHard);
  // A deadline after a soft cancel arms one.
  auto arm = planProcessCancel(cancellingWith(CancelStrategy::kSoft, std::nullopt),
                               input(CancelStrategy::kSoftThenForce, 3), kNow);
  EXPECT_EQ(arm.action, TerminationAction::kReschedule);
  EXPECT_EQ(arm.after.cancel->force_at, kNow + 3000);
  // After a hard cancel nothing more is issued.
  auto again =
      planProcessCancel(cancellingWith(CancelStrategy::kHard, std::nullopt), input(CancelStrategy::kHard), kNow);
  EXPECT_EQ(again.action, TerminationAction::kNone);
  EXPECT_EQ(again.termination, TerminationStatus::kIssued);
}

TEST(ItemCancelPlan, PendingItemOnlyThatOne) {
  auto p = makeProcess(ProcessStatus::kQueued, {IS::kPending, IS::kPending});
  auto plan = planItemCancel(p, "q0", input(CancelStrategy::kHard), kNow);
  EXPECT_EQ(plan.cancelled_item_ids, Ids{"q0"});
  EXPECT_EQ(plan.after.items[1].status, IS::kPending);
  EXPECT_EQ(plan.after.status, ProcessStatus::kQueued);
  EXPECT_EQ(plan.audit.endpoint, "queue_item");
  EXPECT_EQ(plan.audit.queue_item_id, "q0");
  EXPECT_EQ(plan.audit.strategy, CancelStrategy::kSoftThenForce);
  EXPECT_EQ(plan.audit.force_after_seconds, 10);
  EXPECT_FALSE(plan.after.cancel);
}

TEST(ItemCancelPlan, LastPendingItemSettlesTheProcess) {
  auto all_cancelled = planItemCancel(makeProcess(ProcessStatus::kQueued, {IS::kCancelled, IS::kPending}), "q1",
                                      input(CancelStrategy::kSoft), kNow);
  EXPECT_EQ(all_cancelled.after.status, ProcessStatus::kCancelled);
  auto some_succeeded = planItemCancel(makeProcess(ProcessStatus::kRunning, {IS::kSucceeded, IS::kPending}), "q1",
                                       input(CancelStrategy::kSoft), kNow);
  EXPECT_EQ(some_succeeded.after.status, ProcessStatus::kSucceeded);
}

TEST(ItemCancelPlan, TerminalItemIgnored) {
  auto plan = planItemCancel(makeProcess(ProcessStatus::kRunning, {IS::kSucceeded, IS::kPending}), "q0",
                             input(CancelStrategy::kSoft), kNow);
  EXPECT_TRUE(plan.ignored_terminal);
  EXPECT_FALSE(plan.changed);
  EXPECT_EQ(plan.audit.outcome, "ignored_terminal");
}

TEST(ItemCancelPlan, ExecutingItemGetsNoticeAndForceAfterTenSeconds) {
  auto plan = planItemCancel(makeProcess(ProcessStatus::kRunning, {IS::kExecuting, IS::kPending}), "q0",
                             input(CancelStrategy::kSoft), kNow);
  EXPECT_EQ(plan.action, TerminationAction::kNotifyAndSchedule);
  EXPECT_EQ(plan.force_at, kNow + 10'000);
  EXPECT_EQ(plan.after.status, ProcessStatus::kRunning);
  EXPECT_EQ(plan.after.items[1].status, IS::kPending);
}

TEST(SettledStatus, Rules) {
  EXPECT_FALSE(settledStatus(makeProcess(ProcessStatus::kRunning, {IS::kSucceeded, IS::kPending})));
  EXPECT_FALSE(settledStatus(makeProcess(ProcessStatus::kRunning, {IS::kExecuting})));
  EXPECT_EQ(settledStatus(makeProcess(ProcessStatus::kRunning, {IS::kFailed, IS::kSkipped})), ProcessStatus::kFailed);
  EXPECT_EQ(settledStatus(makeProcess(ProcessStatus::kRunning, {IS::kSucceeded, IS::kCancelled})),
            ProcessStatus::kSucceeded);
  EXPECT_EQ(settledStatus(makeProcess(ProcessStatus::kRunning, {IS::kCancelled})), ProcessStatus::kCancelled);
}

}  // namespace
}  // namespace phonefarm::cancel
