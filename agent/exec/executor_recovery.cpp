// Recovery at start(): what a previous agent instance left behind. In one
// store transaction: executions still open (a stale row, whose item ended
// some other way, is closed), escalations armed and not fired, and
// `cancelling` processes whose trees are gone (settled as cancelled). Then,
// on the loop: each open execution's tree is adopted and watched again (or,
// when gone, ended with the outcome it left), its timeout and escalation
// re-armed at their original deadlines; after that, work starts on every
// phone.
#include <spdlog/spdlog.h>

#include "agent/cancel/escalation_deadline.hpp"
#include "agent/exec/executor_execution.hpp"

namespace phonefarm::exec {

using executor_detail::marker;

void Executor::start(std::function<void()> ready) {
  const WallMs now = clock_.wallNowMs();
  store_.submit<Recovery>(
      [now](store::Db& db) {
        store::ProcessRepository procs(db);
        store::ExecutionRepository execs(db);
        Recovery rec;
        for (auto& row : execs.openExecutions()) {
          auto p = procs.loadProcess(row.process_id);
          const QueueItem* item = p ? p->executingItem() : nullptr;
          if (item == nullptr || item->queue_item_id != row.queue_item_id) {
            execs.finishExecution(row.execution_id, now, "stale");  // the item ended some other way
            continue;
          }
          rec.open.push_back({std::move(row), p->phone_id, *item});
        }
        rec.escalations = execs.pendingEscalations();
        // A cancel whose tree was gone but not yet recorded as such.
        store::ProcessFilter filter;
        filter.status = ProcessStatus::kCancelling;
        filter.limit = 100000;
        for (auto& p : procs.listProcesses(filter).processes) {
          if (p.executingItem() != nullptr) continue;
          Process after = p;
          after.status = ProcessStatus::kCancelled;
          after.updated_at = now;
          procs.updateProcessState(after);
          ++rec.settled;
        }
        return rec;
      },
      [this, ready = std::move(ready)](Result<Recovery> rec) {
        auto shared = std::make_shared<Result<Recovery>>(std::move(rec));
        loop_.post([this, shared, ready] {
          if (!*shared) {
            spdlog::critical("exec.recovery_failed error=\"{}\"", shared->error().message);
          } else {
            applyRecovery(std::move(**shared));
          }
          started_ = true;
          for (auto& [phone_id, slot] : slots_) {
            if (!slot.busy) kick(phone_id);
          }
          if (ready) ready();
        });
      });
}

void Executor::applyRecovery(Recovery rec) {
  for (auto& open : rec.open) {
    // open.item is the item the row names (checked by the transaction).
    auto e = newExecution(open.row.execution_id, open.row.process_id, open.phone_id, open.item);
    slots_[e->phone_id].busy = true;
    ++stats_.adopted;
    ContainerInfo info{open.row.execution_id, open.row.runtime, open.row.cgroup,
                       static_cast<pid_t>(open.row.leader_pid.value_or(0)), open.row.leader_start_time};
    auto container = containment_.adopt(info, marker(e->execution_id));
    spdlog::info("exec.adopted process_id={} queue_item_id={} execution_id={} runtime={} tree={}", e->process_id,
                 e->item_id, e->execution_id, info.runtime, container ? "alive" : "gone");
    armTimeout(*e, open.item);
    if (container) {
      e->container = std::move(*container);
      attach(std::move(e));
    } else {
      const std::string item_id = e->item_id;
      executions_[item_id] = std::move(e);
      end(*executions_[item_id]);
    }
  }
  for (const auto& row : rec.escalations) {
    Execution* e = find(row.queue_item_id);
    if (e == nullptr || e->ending) continue;  // its end transaction deletes the row
    e->item_cancel = true;                    // finishItem keeps a cancelling process's status anyway
    cancel::EscalationDeadline deadline{row.force_at, row.force_at_boot_ns, row.boot_id};
    armEscalation(*e, cancel::timeLeft(deadline, clock_, options_.boot_id));
  }
  if (!rec.open.empty() || rec.settled > 0 || !rec.escalations.empty()) {
    spdlog::info("exec.recovered executions={} escalations={} settled_cancels={}", rec.open.size(),
                 rec.escalations.size(), rec.settled);
  }
}

}  // namespace phonefarm::exec
