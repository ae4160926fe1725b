// Executor transitions: which item runs next, start, and every way an item
// ends (success, failure with later items skipped, timeout, cancel, lost).
#include "agent/exec/item_transitions.hpp"

#include <gtest/gtest.h>

namespace phonefarm::exec {
namespace {

constexpr WallMs kNow = 1'800'000'000'000;
using IS = ItemStatus;

Process makeProcess(ProcessStatus status, std::vector<ItemStatus> items) {
  Process p;
  p.process_id = "p";
  p.status = status;
  for (std::size_t i = 0; i < items.size(); ++i) {
    QueueItem it;
    it.queue_item_id = "q" + std::to_string(i);
    it.position = static_cast<int>(i);
    it.status = items[i];
    p.items.push_back(it);
  }
  return p;
}

ItemOutcome exitWith(int code) { return ItemOutcome{code, std::nullopt, false, false, std::nullopt}; }

TEST(RunnableItem, FirstPendingInOrderOnly) {
  EXPECT_EQ(runnableItem(makeProcess(ProcessStatus::kQueued, {IS::kPending, IS::kPending})), "q0");
  EXPECT_EQ(runnableItem(makeProcess(ProcessStatus::kRunning, {IS::kSucceeded, IS::kPending})), "q1");
  EXPECT_FALSE(runnableItem(makeProcess(ProcessStatus::kRunning, {IS::kExecuting, IS::kPending})));
  EXPECT_FALSE(runnableItem(makeProcess(ProcessStatus::kCancelled, {IS::kCancelled})));
  EXPECT_FALSE(runnableItem(makeProcess(ProcessStatus::kCancelling, {IS::kExecuting})));
  // A legacy-cancelled item is skipped over; the next pending one runs.
  EXPECT_EQ(runnableItem(makeProcess(ProcessStatus::kQueued, {IS::kCancelled, IS::kPending})), "q1");
}

TEST(StartItem, MarksExecutingAndRunning) {
  auto p = startItem(makeProcess(ProcessStatus::kQueued, {IS::kPending, IS::kPending}), "q0", kNow);
  EXPECT_EQ(p.status, ProcessStatus::kRunning);
  EXPECT_EQ(p.items[0].status, IS::kExecuting);
  EXPECT_EQ(p.items[0].started_at, kNow);
  EXPECT_EQ(p.updated_at, kNow);
  EXPECT_THROW(startItem(p, "q1", kNow), std::logic_error);
}

TEST(FinishItem, SuccessMovesOnThenSucceeds) {
  auto p = finishItem(makeProcess(ProcessStatus::kRunning, {IS::kExecuting, IS::kPending}), "q0", exitWith(0), kNow);
  EXPECT_EQ(p.items[0].status, IS::kSucceeded);
  EXPECT_EQ(p.items[0].exit_code, 0);
  EXPECT_EQ(p.status, ProcessStatus::kRunning);
  EXPECT_EQ(runnableItem(p), "q1");
  auto done = finishItem(startItem(p, "q1", kNow), "q1", exitWith(0), kNow);
  EXPECT_EQ(done.status, ProcessStatus::kSucceeded);
}

TEST(FinishItem, FailureSkipsTheRestAndFailsTheProcess) {
  auto p = finishItem(makeProcess(ProcessStatus::kRunning, {IS::kExecuting, IS::kPending, IS::kPending}), "q0",
                      exitWith(3), kNow);
  EXPECT_EQ(p.items[0].status, IS::kFailed);
  EXPECT_EQ(p.items[0].exit_code, 3);
  EXPECT_EQ(p.items[1].status, IS::kSkipped);
  EXPECT_EQ(p.items[2].status, IS::kSkipped);
  EXPECT_EQ(p.status, ProcessStatus::kFailed);
}

TEST(FinishItem, KilledBySignalOrTimeoutFails) {
  auto killed = finishItem(makeProcess(ProcessStatus::kRunning, {IS::kExecuting}), "q0",
                           ItemOutcome{std::nullopt, "SIGSEGV", false, false, std::nullopt}, kNow);
  EXPECT_EQ(killed.items[0].status, IS::kFailed);
  EXPECT_EQ(killed.items[0].signal, "SIGSEGV");
  auto timed_out = finishItem(makeProcess(ProcessStatus::kRunning, {IS::kExecuting, IS::kPending}), "q0",
                              ItemOutcome{std::nullopt, "SIGKILL", true, false, std::nullopt}, kNow);
  EXPECT_EQ(timed_out.items[0].status, IS::kFailed);
  EXPECT_EQ(timed_out.items[0].note, "timed out");
  EXPECT_EQ(timed_out.items[1].status, IS::kSkipped);
  EXPECT_EQ(timed_out.status, ProcessStatus::kFailed);
}

TEST(FinishItem, CancellingProcessEndsCancelled) {
  auto p = finishItem(makeProcess(ProcessStatus::kCancelling, {IS::kExecuting, IS::kCancelled}), "q0",
                      ItemOutcome{std::nullopt, "SIGKILL", false, true, std::nullopt}, kNow);
  EXPECT_EQ(p.items[0].status, IS::kCancelled);
  EXPECT_EQ(p.items[0].signal, "SIGKILL");
  EXPECT_EQ(p.status, ProcessStatus::kCancelled);
  // A cooperative stop that exits 0 is still a cancelled item.
  auto soft = finishItem(makeProcess(ProcessStatus::kCancelling, {IS::kExecuting}), "q0", exitWith(0), kNow);
  EXPECT_EQ(soft.items[0].status, IS::kCancelled);
  EXPECT_EQ(soft.status, ProcessStatus::kCancelled);
}

TEST(FinishItem, ItemLevelCancelLetsTheProcessGoOn) {
  auto p = finishItem(makeProcess(ProcessStatus::kRunning, {IS::kExecuting, IS::kPending}), "q0",
                      ItemOutcome{std::nullopt, "SIGTERM", false, true, std::nullopt}, kNow);
  EXPECT_EQ(p.items[0].status, IS::kCancelled);
  EXPECT_EQ(p.items[1].status, IS::kPending);
  EXPECT_EQ(p.status, ProcessStatus::kRunning);
  EXPECT_EQ(runnableItem(p), "q1");
}

TEST(FinishItem, LostWorkFailsWithTheReason) {
  auto p = finishItem(makeProcess(ProcessStatus::kRunning, {IS::kExecuting}), "q0",
                      ItemOutcome{std::nullopt, std::nullopt, false, false, "lost: no status file"}, kNow);
  EXPECT_EQ(p.items[0].status, IS::kFailed);
  EXPECT_FALSE(p.items[0].exit_code);
  EXPECT_FALSE(p.items[0].signal);
  EXPECT_EQ(p.items[0].note, "lost: no status file");
  EXPECT_EQ(p.status, ProcessStatus::kFailed);
  EXPECT_THROW(finishItem(p, "q0", exitWith(0), kNow), std::logic_error);
}

}  // namespace
}  // namespace phonefarm::exec
