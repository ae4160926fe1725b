// Terminating work: the cancel path's WorkTerminator::apply() (the stop
// notice: cancel file, stop signal, SIGCONT; or the kill), the escalation
// timers of soft_then_force, the item timeout, and the stuck check that
// follows every kill: a tree still alive `stuck_after` after its kill is
// killed again, reported once (note on the item, log, counter) and still
// watched. A forced kill asks for the phone's reset.
#include <signal.h>
#include <spdlog/spdlog.h>

#include "agent/exec/exec_status.hpp"
#include "agent/exec/executor_execution.hpp"
#include "agent/exec/signal_names.hpp"

namespace phonefarm::exec {

using executor_detail::untilWall;

Status Executor::kill(Execution& e, const std::string& why) {
  Status st = e.container ? e.container->kill() : okStatus();
  e.kill_issued = true;
  ++stats_.kills;
  if (e.escalation_timer != 0) loop_.cancelTimer(std::exchange(e.escalation_timer, 0));
  if (e.stuck_timer == 0) {
    const std::string item_id = e.item_id;
    e.stuck_timer = loop_.startTimer(options_.stuck_after, [this, item_id] { onStuckCheck(item_id); });
  }
  if (st) {
    spdlog::info("exec.kill process_id={} queue_item_id={} execution_id={} why={}", e.process_id, e.item_id,
                 e.execution_id, why);
  } else {
    spdlog::error("exec.kill_failed process_id={} queue_item_id={} why={} error=\"{}\"", e.process_id, e.item_id, why,
                  st.error().message);
  }
  return st;
}

cancel::TerminationResult Executor::apply(const cancel::CancelPlan& plan) {
  cancel::TerminationResult r;
  r.status = plan.termination;
  if (!plan.executing_item_id) return r;
  Execution* e = find(*plan.executing_item_id);
  // Every answer about executing work names its container, a repeated
  // cancel's (no action) too: the scheduler correlates by it.
  if (e != nullptr && e->container) r.container = e->container->info().toJson();
  if (plan.action == cancel::TerminationAction::kNone) return r;
  if (e == nullptr) {
    r.status = cancel::TerminationStatus::kFailed;
    r.error = "queue item " + *plan.executing_item_id + " has no execution on this agent";
    return r;
  }
  if (plan.audit.endpoint == "queue_item") e->item_cancel = true;
  if (e->ending) {
    // The tree is already gone: whatever was asked has nothing left to act on.
    r.terminate_issued = plan.action == cancel::TerminationAction::kKill;
    return r;
  }
  using cancel::TerminationAction;
  switch (plan.action) {
    case TerminationAction::kNotify:
    case TerminationAction::kNotifyAndSchedule: {
      boost::json::object notice{{"reason", plan.audit.reason},
                                 {"strategy", toString(plan.audit.strategy)},
                                 {"requested_by", plan.audit.requested_by},
                                 {"requested_at", formatRfc3339(plan.audit.requested_at)}};
      if (plan.force_at) notice["force_at"] = formatRfc3339(*plan.force_at);
      // The agent's record, then the command's read-only copy: whatever the
      // work does to its copy changes nothing the agent acts on. An execution
      // started before the control/work split has no work dir; its command
      // reads the notice from the execution dir, as it did then.
      std::error_code ec;
      const bool split = std::filesystem::is_directory(e->work_dir, ec);
      auto file = writeCancelFile(e->dir, notice, split ? 0600 : 0644);
      if (file && split) {
        if (auto copy = writeCancelFile(e->work_dir, notice, 0444); !copy) {
          file = makeError(copy.error().kind, "the work's copy of the notice: " + copy.error().message);
        }
      }
      Status signalled = okStatus();
      if (e->stop_signal != "none") {
        if (auto sig = signalNumber(e->stop_signal)) {
          signalled = e->container->signalLeader(*sig);
          if (signalled) (void)e->container->signalLeader(SIGCONT);
        }
      }
      if (!file) r.error = file.error().message;
      if (!signalled && signalled.error().kind != ErrorKind::kNotFound) {
        r.error = (r.error ? *r.error + "; " : std::string()) + signalled.error().message;
      }
      if (!file && !signalled && plan.action == TerminationAction::kNotify)
        r.status = cancel::TerminationStatus::kFailed;
      spdlog::info("exec.notice process_id={} queue_item_id={} stop_signal={} cancel_file={}", e->process_id,
                   e->item_id, e->stop_signal, file ? "written" : "failed");
      if (plan.action == TerminationAction::kNotifyAndSchedule && plan.force_at) {
        armEscalation(*e, untilWall(clock_, *plan.force_at));
      }
      break;
    }
    case TerminationAction::kReschedule:
      if (plan.force_at) armEscalation(*e, untilWall(clock_, *plan.force_at));
      break;
    case TerminationAction::kKill: {
      auto st = kill(*e, "cancel");
      if (!st) {
        r.status = cancel::TerminationStatus::kFailed;
        r.error = st.error().message;
      } else {
        r.terminate_issued = true;
        r.phone_reset = resets_.requestReset(e->phone_id, "forced_cancel");
      }
      break;
    }
    case TerminationAction::kNone:
      break;
  }
  return r;
}

void Executor::armEscalation(Execution& e, std::chrono::milliseconds delay) {
  if (e.escalation_timer != 0) loop_.cancelTimer(e.escalation_timer);
  const std::string item_id = e.item_id;
  e.escalation_timer = loop_.startTimer(delay, [this, item_id] { onEscalation(item_id); });
  spdlog::info("exec.escalation_armed queue_item_id={} in_ms={}", item_id, delay.count());
}

Executor::Execution* Executor::timerFired(const std::string& item_id, os::EventLoop::Id Execution::*timer) {
  Execution* e = find(item_id);
  if (e == nullptr) return nullptr;
  e->*timer = 0;
  return e->ending ? nullptr : e;
}

void Executor::onEscalation(const std::string& item_id) {
  Execution* e = timerFired(item_id, &Execution::escalation_timer);
  if (e == nullptr) return;
  ++stats_.escalations_fired;
  if (kill(*e, "escalation")) (void)resets_.requestReset(e->phone_id, "forced_cancel");
  store_.submit<Unit>(
      [item_id, now = clock_.wallNowMs()](store::Db& db) {
        store::ExecutionRepository(db).markEscalationFired(item_id, now);
        return Unit{};
      },
      [](const Result<Unit>&) {});
}

void Executor::onTimeout(const std::string& item_id) {
  Execution* e = timerFired(item_id, &Execution::timeout_timer);
  if (e == nullptr) return;
  ++stats_.timeouts;
  e->timed_out = true;
  spdlog::warn("exec.timeout process_id={} queue_item_id={}", e->process_id, item_id);
  if (!kill(*e, "timeout")) return;
  store_.submit<Unit>(
      [item_id, now = clock_.wallNowMs()](store::Db& db) {
        store::ExecutionRepository(db).recordKill(item_id, "timeout", now);
        return Unit{};
      },
      [](const Result<Unit>&) {});
  (void)resets_.requestReset(e->phone_id, "timeout");
}

void Executor::onStuckCheck(const std::string& item_id) {
  Execution* e = timerFired(item_id, &Execution::stuck_timer);
  if (e == nullptr) return;
  const auto pids = e->container ? e->container->pids() : std::vector<pid_t>{};
  if (pids.empty()) {
    onReady(item_id);  // emptied meanwhile; let the watch path conclude
    return;
  }
  std::string list;
  for (pid_t pid : pids) list += (list.empty() ? "" : " ") + std::to_string(pid);
  // Keep killing: a task leaving uninterruptible sleep dies at the next one.
  (void)e->container->kill();
  e->stuck_timer = loop_.startTimer(options_.stuck_after, [this, item_id] { onStuckCheck(item_id); });
  if (e->stuck_note) return;  // reported once; still watched
  ++stats_.stuck;
  e->stuck_note = "stuck: " + std::to_string(pids.size()) + " process(es) still alive " +
                  std::to_string(options_.stuck_after.count() / 1000) + " s after the kill (pids " + list + ")";
  spdlog::warn("exec.stuck process_id={} queue_item_id={} pids=[{}]", e->process_id, item_id, list);
  store_.submit<Unit>(
      [process_id = e->process_id, item_id, note = *e->stuck_note](store::Db& db) {
        store::ProcessRepository procs(db);
        if (auto p = procs.loadProcess(process_id)) {
          for (auto item : p->items) {
            if (item.queue_item_id == item_id && item.status == ItemStatus::kExecuting) {
              item.note = note;
              procs.updateItemState(item);
            }
          }
        }
        return Unit{};
      },
      [](const Result<Unit>&) {});
}

}  // namespace phonefarm::exec
