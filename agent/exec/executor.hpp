// Executor: runs the scheduler's work on the rack and terminates it.
//
// Per phone, the oldest unfinished process is served until it ends, its items
// one after another, at most one item per phone at a time. Starting an item is
// a committed transaction (item executing + execution row) before anything is
// spawned; then the exec shim starts in a container of its own
// (containment.hpp). The executor watches the container's descriptors on the
// event loop (no polling) and ends the item when the whole tree is gone, with
// the outcome the shim wrote (status.json), again in one transaction; then the
// phone's next item starts.
//
// It is also the cancel path's WorkTerminator: the stop notice (cancel file,
// stop signal, SIGCONT), the kill, and the escalation timers of
// soft_then_force, whose deadlines the CancelService stores with the cancel.
// Timeouts kill like a hard cancel. A tree still alive 10 s after its kill is
// reported as stuck (note on the item, log, counter) and still watched.
//
// start() re-adopts what a previous agent instance left executing (watch the
// tree again, or read the outcome it left, or call it lost), re-arms stored
// escalations at their original deadlines, settles `cancelling` processes
// whose trees are gone, and then starts work on every phone.
//
// Threading: everything runs on the event loop's thread; store jobs complete
// on the store thread and hop back with os::EventLoop::post.
//
// The implementation is one file per concept: executor_slots.cpp (one item
// per phone, the start transaction), executor_launch.cpp (construction, the
// launch), executor_watch.cpp (watching the tree, the end transaction),
// executor_termination.cpp (cancel, escalation, timeout, stuck checks),
// executor_recovery.cpp (start()), executor_reporting.cpp; their private
// types are in executor_execution.hpp.
#pragma once

#include <sys/types.h>

#include <boost/json/object.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/cancel/work_terminator.hpp"
#include "agent/exec/containment.hpp"
#include "agent/exec/item_transitions.hpp"
#include "agent/exec/log_relay.hpp"
#include "agent/exec/phone_reset_requester.hpp"
#include "common/clock.hpp"
#include "common/config/config.hpp"
#include "common/os/event_loop.hpp"
#include "common/store/store.hpp"

namespace phonefarm::exec {

struct ExecutorOptions {
  std::filesystem::path state_dir;    // executions live in state_dir/executions/<execution_id>
  std::string run_as;                 // [work] run_as
  std::filesystem::path shim_binary;  // this binary (/proc/self/exe)
  std::vector<PhoneConfig> phones;    // [[phones]]: id -> serial
  std::string boot_id;                // for escalation deadlines
  std::chrono::milliseconds stuck_after{10'000};
  std::chrono::milliseconds store_retry{1'000};  // after a failed store job (disk full, I/O error)
  // Whether the phone may start an item now (ADB state, reset, health); none =
  // always. A phone that becomes startable is announced with phoneChanged().
  std::function<bool(const std::string& phone_id)> can_start;
  // Called on the loop when an item's end has committed, before the phone's
  // next item is looked for (the self-healing of a phone that dropped while
  // the item ran). none = nobody asks.
  std::function<void(const std::string& phone_id)> item_ended;
  // [work] allowed_command_prefixes, checked again at launch: the command is
  // resolved (realpath) and the resolved path executed; a command that has
  // moved out of them fails its item. none = no check (unit tests).
  std::optional<std::vector<std::string>> allowed_command_prefixes;
  // [work] allowed_env, the env policy (env_policy.hpp) applied again at
  // launch: the item may have been queued under another config, or before
  // an upgrade. An item setting a name the policy now refuses fails without
  // running. none = the denylist.
  std::optional<std::vector<std::string>> allowed_env;
  // [work] log_max_bytes: the exec shim keeps at most this much of each of
  // stdout and stderr (log_relay.hpp).
  std::uint64_t log_max_bytes = kDefaultLogMaxBytes;
  // The job units' shim, not the agent, holds CAP_SETUID, CAP_SETGID and
  // CAP_KILL ([work] launcher = "systemd"): the agent needs none of them.
  bool shim_holds_privileges = false;
};

struct ExecutorStats {
  std::uint64_t started = 0;
  std::uint64_t finished = 0;
  std::uint64_t kills = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t escalations_fired = 0;
  std::uint64_t stuck = 0;
  std::uint64_t adopted = 0;
  std::uint64_t lost = 0;
  std::uint64_t start_failures = 0;
  std::uint64_t log_bytes_dropped_stdout = 0;  // past log_max_bytes, as the shims reported them
  std::uint64_t log_bytes_dropped_stderr = 0;
};

class Executor final : public cancel::WorkTerminator {
 public:
  Executor(ExecutorOptions options, store::Store& store, const Clock& clock, os::EventLoop& loop,
           Containment& containment, PhoneResetRequester& resets);
  ~Executor() override;
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Recovery, then work on every phone. `ready` runs (on the loop) once the
  // recovery transaction has committed.
  void start(std::function<void()> ready = {});

  // Something changed for the phone (a process was submitted or cancelled):
  // start its next item if it is idle.
  void phoneChanged(const std::string& phone_id);

  // WorkTerminator.
  cancel::TerminationResult apply(const cancel::CancelPlan& plan) override;
  void processChanged(const Process& process) override { phoneChanged(process.phone_id); }

  // Stops starting items. Running work is left alone (it outlives the agent).
  void stopStarting() { stopping_ = true; }
  // The processes with an item executing now.
  std::vector<std::string> executingProcessIds() const;
  // soft_then_force escalations armed and not fired yet.
  std::size_t pendingEscalations() const;
  // The phone's executing (process_id, queue_item_id), if any.
  std::optional<std::pair<std::string, std::string>> currentOf(const std::string& phone_id) const;
  // `done` runs when no execution is left (now, if none) or after `timeout`.
  void whenIdle(std::chrono::milliseconds timeout, std::function<void()> done);

  // Why the executor cannot run work (e.g. run_as does not exist), if so.
  const std::optional<std::string>& unavailable() const { return unavailable_; }
  boost::json::object describe() const;
  const ExecutorStats& stats() const { return stats_; }
  // Leader pids of executions, for reaping orphans without stealing those.
  std::vector<pid_t> leaderPids() const;

 private:
  struct Execution;
  struct Slot {
    bool busy = false;   // an item runs, or a start transaction is in flight
    bool again = false;  // something changed while busy: look again when free
  };
  struct StartedItem;
  struct Recovery;

  std::unique_ptr<Execution> newExecution(const std::string& execution_id, const std::string& process_id,
                                          const std::string& phone_id, const QueueItem& item) const;
  void armTimeout(Execution& e, const QueueItem& item);
  // A timer of the item's execution fired: clears it, and returns the
  // execution unless it is gone or already ending.
  Execution* timerFired(const std::string& item_id, os::EventLoop::Id Execution::*timer);
  void kick(const std::string& phone_id);
  void onStartCommitted(const std::string& phone_id, const std::string& execution_id,
                        Result<std::optional<StartedItem>> started);
  void launch(const StartedItem& started, const std::string& execution_id);
  void attach(std::unique_ptr<Execution> e);
  void onReady(const std::string& item_id);
  void syncWatches(Execution& e);
  void end(Execution& e);
  void storeEnd(const std::string& item_id);
  void onEndCommitted(const std::string& item_id, const Status& committed);
  void releaseSlot(const std::string& phone_id);
  Status kill(Execution& e, const std::string& why);
  void armEscalation(Execution& e, std::chrono::milliseconds delay);
  void onEscalation(const std::string& item_id);
  void onTimeout(const std::string& item_id);
  void onStuckCheck(const std::string& item_id);
  void applyRecovery(Recovery recovery);
  void checkIdle();
  std::vector<std::string> commandEnv(const StartedItem& started, const std::string& execution_id,
                                      const std::filesystem::path& work_dir) const;
  Execution* find(const std::string& item_id);

  ExecutorOptions options_;
  store::Store& store_;
  const Clock& clock_;
  os::EventLoop& loop_;
  Containment& containment_;
  PhoneResetRequester& resets_;
  std::optional<std::string> unavailable_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::string home_;      // run_as's home directory, the work's default HOME
  bool started_ = false;  // recovery done: starting work is allowed
  bool stopping_ = false;
  std::map<std::string, Slot> slots_;                             // by phone id
  std::map<std::string, std::unique_ptr<Execution>> executions_;  // by queue item id
  std::vector<std::pair<os::EventLoop::Id, std::function<void()>>> idle_waiters_;
  ExecutorStats stats_;
};

}  // namespace phonefarm::exec
