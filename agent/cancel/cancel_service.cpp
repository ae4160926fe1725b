// CancelService: plan in the store job, act after the commit.
#include "agent/cancel/cancel_service.hpp"

#include <spdlog/spdlog.h>

#include "common/store/execution_repository.hpp"
#include "common/store/process_repository.hpp"

namespace phonefarm::cancel {
namespace {

// When the cancel was planned: the escalation deadline is taken on both clocks.
struct PlannedAt {
  WallMs wall = 0;
  std::int64_t boot_ns = 0;
  std::string boot_id;
};

void storePlan(store::Db& db, store::ProcessRepository& repo, const Process& before, const CancelPlan& plan,
               const PlannedAt& at) {
  const bool scheduled =
      (plan.action == TerminationAction::kNotifyAndSchedule || plan.action == TerminationAction::kReschedule) &&
      plan.force_at;
  // A hard kill is stored as a deadline that is already due: if the agent
  // dies between this commit and the kill, the restarted agent's recovery
  // finds it and kills the tree (the end of the execution deletes the row).
  const bool kill_now = plan.action == TerminationAction::kKill;
  if ((scheduled || kill_now) && plan.executing_item_id) {
    // Committed with the cancel, before any signal is sent: an agent that
    // dies right after still knows the deadline.
    const WallMs force_at = scheduled ? *plan.force_at : at.wall;
    store::EscalationRow row;
    row.queue_item_id = *plan.executing_item_id;
    row.process_id = plan.after.process_id;
    row.force_at = force_at;
    row.force_at_boot_ns = at.boot_ns + (force_at - at.wall) * 1'000'000;
    row.boot_id = at.boot_id;
    row.created_at = at.wall;
    store::ExecutionRepository(db).upsertEscalation(row);
  }
  if (plan.changed) {
    for (std::size_t i = 0; i < plan.after.items.size(); ++i) {
      if (plan.after.items[i].status != before.items[i].status) repo.updateItemState(plan.after.items[i]);
    }
    repo.updateProcessState(plan.after);
  }
  repo.appendAudit(plan.audit);
}

}  // namespace

TerminationResult NoExecutorTerminator::apply(const CancelPlan& plan) {
  TerminationResult r;
  if (plan.action == TerminationAction::kNone) {
    r.status = plan.termination;
    return r;
  }
  r.status = TerminationStatus::kFailed;
  r.error = "no executor is attached to this agent";
  return r;
}

void CancelService::cancelProcess(std::string process_id, CancelInput input, Done done) {
  const WallMs now = clock_.wallNowMs();
  const PlannedAt at{now, clock_.bootNowNs(), boot_id_};
  store_.submit<CancelPlan>(
      [process_id = std::move(process_id), input = std::move(input), now, at](store::Db& db) {
        store::ProcessRepository repo(db);
        auto before = repo.loadProcess(process_id);
        if (!before) throw store::JobAbort{makeError(ErrorKind::kNotFound, "Process not found")};
        CancelPlan plan = planProcessCancel(*before, input, now);
        storePlan(db, repo, *before, plan, at);
        return plan;
      },
      [this, done = std::move(done)](Result<CancelPlan> planned) { finish(std::move(planned), done); });
}

void CancelService::cancelQueueItem(std::string queue_item_id, CancelInput input, Done done) {
  const WallMs now = clock_.wallNowMs();
  const PlannedAt at{now, clock_.bootNowNs(), boot_id_};
  store_.submit<CancelPlan>(
      [queue_item_id = std::move(queue_item_id), input = std::move(input), now, at](store::Db& db) {
        store::ProcessRepository repo(db);
        auto process_id = repo.processIdOfItem(queue_item_id);
        if (!process_id) throw store::JobAbort{makeError(ErrorKind::kNotFound, "Queue item not found")};
        auto before = repo.loadProcess(*process_id);
        if (!before) throw store::JobAbort{makeError(ErrorKind::kNotFound, "Queue item not found")};
        CancelPlan plan = planItemCancel(*before, queue_item_id, input, now);
        storePlan(db, repo, *before, plan, at);
        return plan;
      },
      [this, done = std::move(done)](Result<CancelPlan> planned) { finish(std::move(planned), done); });
}

void CancelService::finish(Result<CancelPlan> planned, const Done& done) {
  // On the store thread, after the commit: the terminator acts on the loop.
  auto shared = std::make_shared<Result<CancelPlan>>(std::move(planned));
  post_([this, shared, done] { act(std::move(*shared), done); });
}

void CancelService::act(Result<CancelPlan> planned, const Done& done) {
  if (!planned) return done(planned.error());
  CancelOutcome outcome{std::move(planned).value(), {}};
  const CancelPlan& plan = outcome.plan;
  if (plan.executing_item_id && !plan.ignored_terminal) {
    if (fault_ == Fault::kCrashAfterCancelCommit && plan.action == TerminationAction::kKill) {
      // Test hook: the kill is committed (and its due deadline stored), the
      // tree not yet signalled; a restarted agent must carry it out.
      crashAtFault(fault_, "process_id=" + plan.after.process_id + " queue_item_id=" + *plan.executing_item_id);
    }
    outcome.termination = terminator_.apply(plan);
  } else {
    outcome.termination.status = plan.termination;
  }
  if (plan.changed) terminator_.processChanged(plan.after);
  spdlog::info("cancel.accepted process_id={} endpoint={} strategy={} outcome={} termination={} cancelled_items={}",
               plan.after.process_id, plan.audit.endpoint, toString(plan.audit.strategy), plan.audit.outcome,
               toString(outcome.termination.status), plan.cancelled_item_ids.size());
  done(std::move(outcome));
}

}  // namespace phonefarm::cancel
