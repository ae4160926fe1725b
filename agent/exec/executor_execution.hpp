// The Executor's private types and the few helpers its pieces share: the
// executor is one class (executor.hpp) implemented in several files, one per
// concept (executor_slots.cpp, executor_launch.cpp, executor_watch.cpp,
// executor_termination.cpp, executor_recovery.cpp, executor_reporting.cpp).
// Include this only from those files.
#pragma once

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/exec/containment.hpp"
#include "agent/exec/executor.hpp"
#include "agent/exec/item_transitions.hpp"
#include "common/clock.hpp"
#include "common/os/event_loop.hpp"
#include "common/store/execution_repository.hpp"
#include "common/store/process_repository.hpp"

namespace phonefarm::exec {

// What the start transaction committed: the item is executing.
struct Executor::StartedItem {
  Process process;  // as stored after the start
  QueueItem item;
};

// One queue item running (or ending) in its container.
struct Executor::Execution {
  std::string execution_id;
  std::string item_id;
  std::string process_id;
  std::string phone_id;
  std::filesystem::path dir;       // control: state_dir/executions/<id>, the agent's, 0700
  std::filesystem::path work_dir;  // the command's cwd: state_dir/workdirs/<id>, group run_as, 0770
  std::string stop_signal;
  std::unique_ptr<Container> container;
  std::map<int, os::EventLoop::Id> watches;  // fd -> watch
  os::EventLoop::Id timeout_timer = 0;
  os::EventLoop::Id escalation_timer = 0;
  os::EventLoop::Id stuck_timer = 0;
  bool kill_issued = false;
  bool timed_out = false;
  bool item_cancel = false;  // the legacy item-level cancel was requested
  bool ending = false;       // the tree is gone; the end transaction is in flight
  std::optional<std::string> stuck_note;
  ItemOutcome outcome;  // set by end()
};

// What start()'s recovery transaction found for the loop thread to act on.
struct Executor::Recovery {
  struct Open {
    store::ExecutionRow row;
    std::string phone_id;
    QueueItem item;
  };
  std::vector<Open> open;
  std::vector<store::EscalationRow> escalations;
  int settled = 0;
};

namespace executor_detail {

// The environment entry that tags every process of an execution: the
// process-group runtime finds a tree's escaped members by it.
inline std::string marker(const std::string& execution_id) { return "PHONEFARM_EXECUTION_ID=" + execution_id; }

// Writes the items whose state differs (and `item_id` itself) and the process.
inline void storeTransition(store::ProcessRepository& repo, const Process& before, const Process& after,
                            const std::string& item_id) {
  for (std::size_t i = 0; i < after.items.size(); ++i) {
    if (after.items[i].queue_item_id == item_id || after.items[i].status != before.items[i].status) {
      repo.updateItemState(after.items[i]);
    }
  }
  repo.updateProcessState(after);
}

// A timer delay from a wall-clock deadline (zero when it has passed).
inline std::chrono::milliseconds untilWall(const Clock& clock, WallMs at) {
  return std::chrono::milliseconds(std::max<WallMs>(0, at - clock.wallNowMs()));
}

}  // namespace executor_detail
}  // namespace phonefarm::exec
