// Watching and ending an execution. The container's descriptors (cgroup.events
// inotify, pidfds) are on the event loop; when one turns readable the tree is
// polled once, and when it is gone the item ends with the outcome the exec
// shim wrote (status.json), in one store transaction (item, process,
// execution row, escalation row); then the container is removed and the
// phone's slot released. Also whenIdle(), which waits for the last end.
#include <spdlog/spdlog.h>

#include "agent/exec/exec_status.hpp"
#include "agent/exec/executor_execution.hpp"
#include "agent/exec/log_relay.hpp"

namespace phonefarm::exec {

using executor_detail::storeTransition;

namespace {

std::string describeOutcome(const ItemOutcome& o) {
  if (o.exit_code) return "exit " + std::to_string(*o.exit_code);
  if (o.signal) return "signal " + *o.signal;
  return "lost";
}

}  // namespace

void Executor::attach(std::unique_ptr<Execution> e) {
  const std::string item_id = e->item_id;
  executions_[item_id] = std::move(e);
  syncWatches(*executions_[item_id]);
  onReady(item_id);  // it may have ended before the watches were armed
}

void Executor::syncWatches(Execution& e) {
  std::vector<int> want = e.container && !e.ending ? e.container->watchFds() : std::vector<int>{};
  for (auto it = e.watches.begin(); it != e.watches.end();) {
    if (std::find(want.begin(), want.end(), it->first) == want.end()) {
      loop_.unwatch(it->second);
      it = e.watches.erase(it);
    } else {
      ++it;
    }
  }
  for (int fd : want) {
    if (e.watches.count(fd) == 0) {
      const std::string item_id = e.item_id;
      auto watch = loop_.watchReadable(fd, [this, item_id] { onReady(item_id); });
      // Not recorded: the next onReady (a timer, another fd) tries again.
      if (!watch) {
        spdlog::warn("exec.watch_failed queue_item_id={} fd={} error=\"{}\"", item_id, fd, watch.error().message);
        continue;
      }
      e.watches[fd] = *watch;
    }
  }
}

void Executor::onReady(const std::string& item_id) {
  Execution* e = find(item_id);
  if (e == nullptr || e->ending) return;
  auto gone = e->container->poll();
  syncWatches(*e);  // e.g. stop watching a reaped leader's pidfd, which stays readable
  if (!gone) {
    spdlog::warn("exec.watch_failed queue_item_id={} error=\"{}\"", item_id, gone.error().message);
    return;
  }
  if (*gone) end(*e);
}

void Executor::end(Execution& e) {
  e.ending = true;
  syncWatches(e);
  for (auto* timer : {&e.timeout_timer, &e.escalation_timer, &e.stuck_timer}) {
    if (*timer != 0) loop_.cancelTimer(std::exchange(*timer, 0));
  }
  ItemOutcome& o = e.outcome;
  auto status = readExecStatus(e.dir);
  std::optional<std::string> truncation_note;
  if (status && *status) {
    const ExecStatus& st = **status;
    o.exit_code = st.exit_code;
    o.signal = st.signal;
    if (st.error) o.note = st.error;
    truncation_note = logTruncationNote(st.log_max_bytes, st.stdout_dropped, st.stderr_dropped);
    if (truncation_note) {
      stats_.log_bytes_dropped_stdout += st.stdout_dropped;
      stats_.log_bytes_dropped_stderr += st.stderr_dropped;
      spdlog::info("exec.log_truncated queue_item_id={} execution_id={} stdout_dropped={} stderr_dropped={}", e.item_id,
                   e.execution_id, st.stdout_dropped, st.stderr_dropped);
    }
  } else if (e.kill_issued) {
    o.signal = "SIGKILL";  // the kill took the shim too, before it could write
  } else {
    ++stats_.lost;
    o.note = "lost: the execution ended without an exit status from the exec shim";
    if (!status) *o.note += " (" + status.error().message + ")";
  }
  o.timed_out = e.timed_out;
  o.cancelled = e.item_cancel;
  if (e.stuck_note && !o.note) o.note = e.stuck_note;
  // A work limit that stopped the tree (OOM kill, refused forks) leads the
  // note: the exit status alone would not say why.
  const std::optional<LimitHits> reported = status && *status ? (*status)->limit_hits : std::nullopt;
  auto limit_note =
      e.container ? e.container->limitNote(reported) : containment_.releaseLimits(e.execution_id, reported);
  if (limit_note) {
    spdlog::info("exec.limit_hit queue_item_id={} execution_id={} note=\"{}\"", e.item_id, e.execution_id, *limit_note);
    o.note = o.note ? *limit_note + "; " + *o.note : *limit_note;
  }
  if (truncation_note) o.note = o.note ? *o.note + "; " + *truncation_note : *truncation_note;
  storeEnd(e.item_id);
}

void Executor::storeEnd(const std::string& item_id) {
  Execution* e = find(item_id);
  if (e == nullptr) return;
  const WallMs now = clock_.wallNowMs();
  store_.submit<Unit>(
      [process_id = e->process_id, item_id, execution_id = e->execution_id, outcome = e->outcome, now](store::Db& db) {
        store::ProcessRepository procs(db);
        store::ExecutionRepository execs(db);
        auto before = procs.loadProcess(process_id);
        if (before) {
          for (const auto& item : before->items) {
            if (item.queue_item_id == item_id && item.status == ItemStatus::kExecuting) {
              Process after = finishItem(*before, item_id, outcome, now);
              storeTransition(procs, *before, after, item_id);
            }
          }
        }
        execs.finishExecution(execution_id, now, describeOutcome(outcome));
        execs.deleteEscalation(item_id);
        return Unit{};
      },
      [this, item_id](const Result<Unit>& r) {
        Status st = r ? okStatus() : Status(r.error());
        loop_.post([this, item_id, st] { onEndCommitted(item_id, st); });
      });
}

void Executor::onEndCommitted(const std::string& item_id, const Status& committed) {
  Execution* e = find(item_id);
  if (e == nullptr) return;
  if (!committed) {
    spdlog::error("exec.end_store_failed queue_item_id={} error=\"{}\" retrying", item_id, committed.error().message);
    loop_.startTimer(options_.store_retry, [this, item_id] { storeEnd(item_id); });
    return;
  }
  if (e->container) {
    if (auto st = e->container->remove(); !st) {
      spdlog::warn("exec.cleanup_failed execution_id={} error=\"{}\"", e->execution_id, st.error().message);
    }
  }
  ++stats_.finished;
  spdlog::info("exec.ended process_id={} queue_item_id={} execution_id={} outcome=\"{}\"{}", e->process_id, item_id,
               e->execution_id, describeOutcome(e->outcome), e->outcome.timed_out ? " timed_out=true" : "");
  const std::string phone_id = e->phone_id;
  executions_.erase(item_id);
  if (options_.item_ended) options_.item_ended(phone_id);
  releaseSlot(phone_id);
  checkIdle();
}

void Executor::whenIdle(std::chrono::milliseconds timeout, std::function<void()> done) {
  if (executions_.empty()) return done();
  const os::EventLoop::Id timer = loop_.startTimer(timeout, [this] {
    auto waiters = std::move(idle_waiters_);
    idle_waiters_.clear();
    spdlog::warn("exec.shutdown_wait_expired executions_left={}", executions_.size());
    for (auto& [id, fn] : waiters) fn();
  });
  idle_waiters_.emplace_back(timer, std::move(done));
}

void Executor::checkIdle() {
  if (!executions_.empty()) return;
  auto waiters = std::move(idle_waiters_);
  idle_waiters_.clear();
  for (auto& [id, fn] : waiters) {
    loop_.cancelTimer(id);
    fn();
  }
}

}  // namespace phonefarm::exec
