// The executor's per-phone slots: at most one item per phone at a time. kick()
// looks for the phone's next runnable item and commits its start (item
// executing + execution row) in one store transaction; the launch follows on
// the loop (executor_launch.cpp). A slot is released when the item's end has
// committed (executor_watch.cpp), and the phone is looked at again.
#include <spdlog/spdlog.h>

#include "agent/exec/executor_execution.hpp"
#include "common/ids.hpp"

namespace phonefarm::exec {

using executor_detail::storeTransition;

void Executor::phoneChanged(const std::string& phone_id) { kick(phone_id); }

void Executor::kick(const std::string& phone_id) {
  if (stopping_ || unavailable_ || !started_) return;
  auto it = slots_.find(phone_id);
  if (it == slots_.end()) return;
  Slot& slot = it->second;
  if (slot.busy) {
    slot.again = true;
    return;
  }
  if (options_.can_start && !options_.can_start(phone_id)) return;  // announced again when it can
  slot.busy = true;
  slot.again = false;
  const std::string execution_id = newUuidV4();
  const WallMs now = clock_.wallNowMs();
  store::ExecutionRow row;
  row.execution_id = execution_id;
  row.runtime = std::string(containment_.runtime());
  row.cgroup = containment_.plannedCgroup(execution_id);
  row.boot_id = options_.boot_id;
  row.started_at = now;
  store_.submit<std::optional<StartedItem>>(
      [phone_id, row, now](store::Db& db) mutable -> std::optional<StartedItem> {
        store::ProcessRepository procs(db);
        store::ExecutionRepository execs(db);
        auto head = execs.headProcessOfPhone(phone_id);
        if (!head) return std::nullopt;
        auto before = procs.loadProcess(*head);
        if (!before) return std::nullopt;
        auto item_id = runnableItem(*before);
        if (!item_id) return std::nullopt;
        Process after = startItem(*before, *item_id, now);
        storeTransition(procs, *before, after, *item_id);
        row.queue_item_id = *item_id;
        row.process_id = after.process_id;
        execs.insertExecution(row);
        QueueItem item = *after.executingItem();
        return StartedItem{std::move(after), std::move(item)};
      },
      [this, phone_id, execution_id](Result<std::optional<StartedItem>> started) {
        auto shared = std::make_shared<Result<std::optional<StartedItem>>>(std::move(started));
        loop_.post([this, phone_id, execution_id, shared] { onStartCommitted(phone_id, execution_id, *shared); });
      });
}

void Executor::onStartCommitted(const std::string& phone_id, const std::string& execution_id,
                                Result<std::optional<StartedItem>> started) {
  if (!started) {
    spdlog::error("exec.start_store_failed phone_id={} error=\"{}\" retrying", phone_id, started.error().message);
    slots_[phone_id].busy = false;
    loop_.startTimer(options_.store_retry, [this, phone_id] { kick(phone_id); });
    return;
  }
  if (!*started) {
    // Nothing to run: the phone idles until something changes. Look again only
    // if something did while this transaction was in flight; an unconditional
    // kick would spin (a store transaction per lap) on every idle phone.
    Slot& slot = slots_[phone_id];
    slot.busy = false;
    if (slot.again) kick(phone_id);
    return;
  }
  launch(**started, execution_id);
}

void Executor::releaseSlot(const std::string& phone_id) {
  Slot& slot = slots_[phone_id];
  slot.busy = false;
  // The phone's next item (or the next process) may start now.
  kick(phone_id);
}

}  // namespace phonefarm::exec
