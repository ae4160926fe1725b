// Item transitions of the executor, as pure functions over the stored
// process (the companion of cancel/cancel_plan.hpp): which item a phone runs
// next, an item starting, and an item ending — succeeded, failed (later items
// skipped, process failed), cancelled (the process's cancel completes), timed
// out or lost. The executor stores the result in one transaction.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/model/process.hpp"

namespace phonefarm::exec {

// How an execution ended, as the shim (or the agent, for lost work) saw it.
struct ItemOutcome {
  std::optional<std::int64_t> exit_code;
  std::optional<std::string> signal;  // "SIGKILL", ...
  bool timed_out = false;             // killed because timeout_seconds passed
  bool cancelled = false;             // killed or stopped because of a cancel
  std::optional<std::string> note;    // e.g. "lost: no status file and no processes after restart"
};

// The item of `p` that may start now: its first non-terminal item, when that
// item is pending and nothing of `p` executes; nullopt otherwise.
std::optional<std::string> runnableItem(const Process& p);

// `item_id` -> executing, the process -> running. Throws std::logic_error if
// the item is not the runnable one.
Process startItem(Process p, const std::string& item_id, WallMs now);

// `item_id` (executing) ends with `outcome`; returns the process as it must be
// stored. Rules:
//  - a process in `cancelling` (or an item whose cancel was requested) ends
//    the item `cancelled`; the process settles (`cancelled` when nothing else
//    is left to run);
//  - exit code 0 -> `succeeded`, and the process succeeds after its last item;
//  - anything else (non-zero, signal, timeout, lost) -> `failed`, later
//    pending items -> `skipped`, the process -> `failed`.
Process finishItem(Process p, const std::string& item_id, const ItemOutcome& outcome, WallMs now);

}  // namespace phonefarm::exec
