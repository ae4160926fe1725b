// CancelService: plan in the store job, act after the commit.
#include "agent/cancel/cancel_service.hpp"

#include <spdlog/spdlog.h>

#include "common/store/process_repository.hpp"

namespace phonefarm::cancel {
namespace {

void storePlan(store::ProcessRepository& repo, const Process& before, const CancelPlan& plan) {
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
  store_.submit<CancelPlan>(
      [process_id = std::move(process_id), input = std::move(input), now](store::Db& db) {
        store::ProcessRepository repo(db);
        auto before = repo.loadProcess(process_id);
        if (!before) throw store::JobAbort{makeError(ErrorKind::kNotFound, "Process not found")};
        CancelPlan plan = planProcessCancel(*before, input, now);
        storePlan(repo, *before, plan);
        return plan;
      },
      [this, done = std::move(done)](Result<CancelPlan> planned) { finish(std::move(planned), done); });
}

void CancelService::cancelQueueItem(std::string queue_item_id, CancelInput input, Done done) {
  const WallMs now = clock_.wallNowMs();
  store_.submit<CancelPlan>(
      [queue_item_id = std::move(queue_item_id), input = std::move(input), now](store::Db& db) {
        store::ProcessRepository repo(db);
        auto process_id = repo.processIdOfItem(queue_item_id);
        if (!process_id) throw store::JobAbort{makeError(ErrorKind::kNotFound, "Queue item not found")};
        auto before = repo.loadProcess(*process_id);
        if (!before) throw store::JobAbort{makeError(ErrorKind::kNotFound, "Queue item not found")};
        CancelPlan plan = planItemCancel(*before, queue_item_id, input, now);
        storePlan(repo, *before, plan);
        return plan;
      },
      [this, done = std::move(done)](Result<CancelPlan> planned) { finish(std::move(planned), done); });
}

void CancelService::finish(Result<CancelPlan> planned, const Done& done) {
  if (!planned) return done(planned.error());
  CancelOutcome outcome{std::move(planned).value(), {}};
  const CancelPlan& plan = outcome.plan;
  if (plan.executing_item_id && !plan.ignored_terminal) {
    outcome.termination = terminator_.apply(plan);
  } else {
    outcome.termination.status = plan.termination;
  }
  spdlog::info("cancel.accepted process_id={} endpoint={} strategy={} outcome={} termination={} cancelled_items={}",
               plan.after.process_id, plan.audit.endpoint, toString(plan.audit.strategy), plan.audit.outcome,
               toString(outcome.termination.status), plan.cancelled_item_ids.size());
  done(std::move(outcome));
}

}  // namespace phonefarm::cancel
