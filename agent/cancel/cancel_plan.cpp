// Pure cancel transitions; see cancel_plan.hpp and docs/api.md.
#include "agent/cancel/cancel_plan.hpp"

#include <array>

namespace phonefarm::cancel {
namespace {

constexpr std::int64_t kLegacyForceAfterSeconds = 10;

bool isImmediateKill(const CancelInput& in) {
  return in.strategy == CancelStrategy::kHard ||
         (in.strategy == CancelStrategy::kSoftThenForce && in.force_after_seconds == 0);
}

CancelPlan startPlan(const Process& before, const CancelInput& in, WallMs now, std::string endpoint) {
  CancelPlan plan;
  plan.after = before;
  plan.audit.process_id = before.process_id;
  plan.audit.endpoint = std::move(endpoint);
  plan.audit.requested_at = now;
  plan.audit.reason = in.reason;
  plan.audit.strategy = in.strategy;
  plan.audit.force_after_seconds = in.force_after_seconds;
  plan.audit.requested_by = in.requested_by;
  return plan;
}

void finishAudit(CancelPlan& plan) {
  plan.audit.outcome = plan.ignored_terminal ? kOutcomeIgnored : kOutcomeRequested;
  plan.audit.termination_status = toString(plan.termination);
}

// Decides the action on an executing item for a request, given the cancel
// already in force (if any). Later requests may only escalate.
void planExecuting(CancelPlan& plan, const CancelInput& in, WallMs now, const std::optional<CancelRecord>& prior) {
  const bool kill = isImmediateKill(in);
  const std::optional<WallMs> requested_force = in.strategy == CancelStrategy::kSoftThenForce && !kill
                                                    ? std::optional<WallMs>(now + in.force_after_seconds * 1000)
                                                    : std::nullopt;
  if (!prior) {
    if (kill) {
      plan.action = TerminationAction::kKill;
      plan.termination = TerminationStatus::kIssued;
    } else if (requested_force) {
      plan.action = TerminationAction::kNotifyAndSchedule;
      plan.termination = TerminationStatus::kScheduled;
      plan.force_at = requested_force;
    } else {
      plan.action = TerminationAction::kNotify;
      plan.termination = TerminationStatus::kRequested;
    }
    return;
  }
  // A cancel is already in force: only escalate.
  if (prior->strategy == CancelStrategy::kHard) {
    plan.termination = TerminationStatus::kIssued;
  } else if (kill) {
    plan.action = TerminationAction::kKill;
    plan.termination = TerminationStatus::kIssued;
  } else if (requested_force && (!prior->force_at || *requested_force < *prior->force_at)) {
    plan.action = TerminationAction::kReschedule;
    plan.termination = TerminationStatus::kScheduled;
    plan.force_at = requested_force;
  } else {
    plan.force_at = prior->force_at;
    plan.termination = prior->force_at ? TerminationStatus::kScheduled : TerminationStatus::kRequested;
  }
}

}  // namespace

std::string_view toString(TerminationStatus s) {
  static constexpr std::array<std::string_view, 5> kNames{"not_needed", "requested", "scheduled", "issued", "failed"};
  return kNames[static_cast<std::size_t>(s)];
}

std::optional<ProcessStatus> settledStatus(const Process& p) {
  bool any_failed = false;
  bool any_succeeded = false;
  for (const auto& item : p.items) {
    if (!isTerminal(item.status)) return std::nullopt;
    any_failed = any_failed || item.status == ItemStatus::kFailed;
    any_succeeded = any_succeeded || item.status == ItemStatus::kSucceeded;
  }
  if (any_failed) return ProcessStatus::kFailed;
  if (any_succeeded) return ProcessStatus::kSucceeded;
  return ProcessStatus::kCancelled;
}

CancelPlan planProcessCancel(const Process& before, const CancelInput& in, WallMs now) {
  CancelPlan plan = startPlan(before, in, now, "process");
  if (isTerminal(before.status)) {
    plan.ignored_terminal = true;
    finishAudit(plan);
    return plan;
  }
  Process& p = plan.after;
  for (auto& item : p.items) {
    if (item.status == ItemStatus::kPending) {
      item.status = ItemStatus::kCancelled;
      item.ended_at = now;
      plan.cancelled_item_ids.push_back(item.queue_item_id);
      plan.changed = true;
    } else if (item.status == ItemStatus::kExecuting) {
      plan.executing_item_id = item.queue_item_id;
      plan.active_item_ids.push_back(item.queue_item_id);
    }
  }
  const std::optional<CancelRecord> prior = before.cancel;
  if (plan.executing_item_id) {
    planExecuting(plan, in, now, prior);
    if (!p.cancel) {
      p.cancel = CancelRecord{in.reason, in.strategy, now, plan.force_at, in.requested_by};
      plan.changed = true;
    } else if (plan.action == TerminationAction::kKill) {
      p.cancel->strategy = CancelStrategy::kHard;
      plan.changed = true;
    } else if (plan.action == TerminationAction::kReschedule) {
      p.cancel->force_at = plan.force_at;
      p.cancel->strategy = CancelStrategy::kSoftThenForce;
      plan.changed = true;
    }
    if (p.status != ProcessStatus::kCancelling) {
      p.status = ProcessStatus::kCancelling;
      plan.changed = true;
    }
  } else {
    plan.termination = TerminationStatus::kNotNeeded;
    if (!p.cancel) p.cancel = CancelRecord{in.reason, in.strategy, now, std::nullopt, in.requested_by};
    p.status = ProcessStatus::kCancelled;
    plan.changed = true;
  }
  if (plan.changed) p.updated_at = now;
  finishAudit(plan);
  return plan;
}

CancelPlan planItemCancel(const Process& before, std::string_view queue_item_id, const CancelInput& input, WallMs now) {
  CancelInput in = input;
  in.strategy = CancelStrategy::kSoftThenForce;
  in.force_after_seconds = kLegacyForceAfterSeconds;
  CancelPlan plan = startPlan(before, in, now, "queue_item");
  plan.audit.queue_item_id = std::string(queue_item_id);
  Process& p = plan.after;
  QueueItem* item = nullptr;
  for (auto& it : p.items) {
    if (it.queue_item_id == queue_item_id) item = &it;
  }
  if (item == nullptr || isTerminal(item->status) || isTerminal(before.status)) {
    plan.ignored_terminal = true;
    finishAudit(plan);
    return plan;
  }
  if (item->status == ItemStatus::kPending) {
    item->status = ItemStatus::kCancelled;
    item->ended_at = now;
    plan.cancelled_item_ids.push_back(item->queue_item_id);
    if (auto settled = settledStatus(p)) p.status = *settled;
  } else {
    plan.executing_item_id = item->queue_item_id;
    plan.active_item_ids.push_back(item->queue_item_id);
    plan.action = TerminationAction::kNotifyAndSchedule;
    plan.termination = TerminationStatus::kScheduled;
    plan.force_at = now + kLegacyForceAfterSeconds * 1000;
  }
  plan.changed = true;
  p.updated_at = now;
  finishAudit(plan);
  return plan;
}

}  // namespace phonefarm::cancel
