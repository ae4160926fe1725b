// Pure executor transitions; see item_transitions.hpp.
#include "agent/exec/item_transitions.hpp"

#include <stdexcept>

#include "agent/cancel/cancel_plan.hpp"

namespace phonefarm::exec {
namespace {

QueueItem& findItem(Process& p, const std::string& item_id) {
  for (auto& item : p.items) {
    if (item.queue_item_id == item_id) return item;
  }
  throw std::logic_error("queue item " + item_id + " is not part of process " + p.process_id);
}

}  // namespace

std::optional<std::string> runnableItem(const Process& p) {
  if (isTerminal(p.status) || p.status == ProcessStatus::kCancelling) return std::nullopt;
  for (const auto& item : p.items) {
    if (item.status == ItemStatus::kExecuting) return std::nullopt;
    if (item.status == ItemStatus::kPending) return item.queue_item_id;
  }
  return std::nullopt;
}

Process startItem(Process p, const std::string& item_id, WallMs now) {
  if (runnableItem(p) != item_id) {
    throw std::logic_error("queue item " + item_id + " of process " + p.process_id + " is not runnable");
  }
  QueueItem& item = findItem(p, item_id);
  item.status = ItemStatus::kExecuting;
  item.started_at = now;
  p.status = ProcessStatus::kRunning;
  p.updated_at = now;
  return p;
}

Process finishItem(Process p, const std::string& item_id, const ItemOutcome& outcome, WallMs now) {
  QueueItem& item = findItem(p, item_id);
  if (item.status != ItemStatus::kExecuting) {
    throw std::logic_error("queue item " + item_id + " is not executing");
  }
  item.ended_at = now;
  item.exit_code = outcome.exit_code;
  item.signal = outcome.signal;
  if (outcome.note) item.note = outcome.note;
  const bool cancelled = outcome.cancelled || p.status == ProcessStatus::kCancelling;
  if (cancelled) {
    item.status = ItemStatus::kCancelled;
  } else if (!outcome.timed_out && outcome.exit_code == 0 && !outcome.signal) {
    item.status = ItemStatus::kSucceeded;
  } else {
    item.status = ItemStatus::kFailed;
    if (outcome.timed_out && !item.note) item.note = "timed out";
    for (auto& later : p.items) {
      if (later.status == ItemStatus::kPending) {
        later.status = ItemStatus::kSkipped;
        later.ended_at = now;
      }
    }
  }
  if (p.status == ProcessStatus::kCancelling) {
    // The cancel completes once the tree is gone; whatever is still pending
    // was cancelled with the request.
    p.status = ProcessStatus::kCancelled;
  } else if (auto settled = cancel::settledStatus(p)) {
    p.status = *settled;
  }
  p.updated_at = now;
  return p;
}

}  // namespace phonefarm::exec
