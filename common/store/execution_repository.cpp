// SQL of executions and escalations; see execution_repository.hpp.
#include "common/store/execution_repository.hpp"

#include "common/store/event_log.hpp"

namespace phonefarm::store {

std::optional<std::string> ExecutionRepository::headProcessOfPhone(std::string_view phone_id) {
  Statement& st = db_.prepare(
      "SELECT process_id FROM processes WHERE phone_id = ? AND status IN ('queued', 'running', 'cancelling') "
      "ORDER BY seq LIMIT 1");
  st.bind(1, phone_id);
  std::optional<std::string> id;
  if (st.step()) id = st.getText(0);
  st.reset();
  return id;
}

void ExecutionRepository::insertExecution(const ExecutionRow& r) {
  Statement& st = db_.prepare(
      "INSERT INTO executions (execution_id, queue_item_id, runtime, cgroup, leader_pid, leader_start_time, boot_id, "
      "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, r.execution_id)
      .bind(2, r.queue_item_id)
      .bind(3, r.runtime)
      .bind(4, r.cgroup)
      .bind(5, r.leader_pid)
      .bind(6, r.leader_start_time)
      .bind(7, r.boot_id)
      .bind(8, r.started_at);
  st.run();
}

void ExecutionRepository::setExecutionLeader(std::string_view execution_id, std::int64_t pid,
                                             std::optional<std::int64_t> start_time) {
  Statement& st = db_.prepare("UPDATE executions SET leader_pid = ?, leader_start_time = ? WHERE execution_id = ?");
  st.bind(1, pid).bind(2, start_time).bind(3, execution_id);
  st.run();
}

void ExecutionRepository::finishExecution(std::string_view execution_id, WallMs ended_at, std::string_view outcome) {
  Statement& st = db_.prepare("UPDATE executions SET ended_at = ?, outcome = ? WHERE execution_id = ?");
  st.bind(1, ended_at).bind(2, outcome).bind(3, execution_id);
  st.run();
}

namespace {

// Columns 0-8 of the SELECTs below: execution_id, queue_item_id, process_id,
// runtime, cgroup, leader_pid, leader_start_time, boot_id, started_at.
ExecutionRow readExecutionRow(Statement& st) {
  ExecutionRow r;
  r.execution_id = st.getText(0);
  r.queue_item_id = st.getText(1);
  r.process_id = st.getText(2);
  r.runtime = st.getText(3);
  r.cgroup = st.getOptionalText(4);
  r.leader_pid = st.getOptionalInt(5);
  r.leader_start_time = st.getOptionalInt(6);
  r.boot_id = st.getOptionalText(7);
  r.started_at = st.getInt(8);
  return r;
}

}  // namespace

std::vector<ExecutionRow> ExecutionRepository::openExecutions() {
  Statement& st = db_.prepare(
      "SELECT e.execution_id, e.queue_item_id, q.process_id, e.runtime, e.cgroup, e.leader_pid, "
      "e.leader_start_time, e.boot_id, e.started_at FROM executions e "
      "JOIN queue_items q ON q.queue_item_id = e.queue_item_id WHERE e.ended_at IS NULL ORDER BY e.started_at");
  std::vector<ExecutionRow> rows;
  while (st.step()) {
    rows.push_back(readExecutionRow(st));
  }
  st.reset();
  return rows;
}

std::optional<ExecutionRow> ExecutionRepository::latestExecutionOf(std::string_view queue_item_id) {
  Statement& st = db_.prepare(
      "SELECT e.execution_id, e.queue_item_id, q.process_id, e.runtime, e.cgroup, e.leader_pid, "
      "e.leader_start_time, e.boot_id, e.started_at, e.ended_at, e.outcome FROM executions e "
      "JOIN queue_items q ON q.queue_item_id = e.queue_item_id WHERE e.queue_item_id = ? "
      "ORDER BY e.started_at DESC, e.rowid DESC LIMIT 1");
  st.bind(1, queue_item_id);
  std::optional<ExecutionRow> row;
  if (st.step()) {
    row = readExecutionRow(st);
    row->ended_at = st.getOptionalInt(9);
    row->outcome = st.getOptionalText(10);
  }
  st.reset();
  return row;
}

void ExecutionRepository::upsertEscalation(const EscalationRow& r) {
  Statement& st = db_.prepare(
      "INSERT INTO escalations (queue_item_id, process_id, force_at, force_at_boot_ns, boot_id, created_at, fired_at) "
      "VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (queue_item_id) DO UPDATE SET force_at = excluded.force_at, "
      "force_at_boot_ns = excluded.force_at_boot_ns, boot_id = excluded.boot_id, fired_at = NULL");
  st.bind(1, r.queue_item_id)
      .bind(2, r.process_id)
      .bind(3, r.force_at)
      .bind(4, r.force_at_boot_ns)
      .bind(5, r.boot_id)
      .bind(6, r.created_at);
  st.run();
}

void ExecutionRepository::markEscalationFired(std::string_view queue_item_id, WallMs at) {
  Statement& st = db_.prepare("UPDATE escalations SET fired_at = ? WHERE queue_item_id = ? AND fired_at IS NULL");
  st.bind(1, at).bind(2, queue_item_id);
  st.run();
  if (db_.changes() == 0) return;  // no deadline, or it fired already: no new event
  Statement& ids = db_.prepare(
      "SELECT e.process_id, p.phone_id, e.force_at FROM escalations e JOIN processes p USING (process_id) "
      "WHERE e.queue_item_id = ?");
  ids.bind(1, queue_item_id);
  if (!ids.step()) {
    ids.reset();
    return;
  }
  EventIds event_ids{ids.getText(0), std::string(queue_item_id), ids.getText(1), std::nullopt};
  const WallMs force_at = ids.getInt(2);
  ids.reset();
  EventLog(db_).append(event_kind::kTerminationEscalated, event_ids,
                       boost::json::object{{"force_at", formatRfc3339(force_at)}}, at);
}

void ExecutionRepository::recordKill(std::string_view queue_item_id, std::string_view cause, WallMs at) {
  Statement& ids = db_.prepare(
      "SELECT q.process_id, p.phone_id FROM queue_items q JOIN processes p USING (process_id) "
      "WHERE q.queue_item_id = ?");
  ids.bind(1, queue_item_id);
  if (!ids.step()) {
    ids.reset();
    return;
  }
  EventIds event_ids{ids.getText(0), std::string(queue_item_id), ids.getText(1), std::nullopt};
  ids.reset();
  EventLog(db_).append(event_kind::kTerminationIssued, event_ids,
                       boost::json::object{{"termination", "issued"}, {"cause", cause}}, at);
}

void ExecutionRepository::deleteEscalation(std::string_view queue_item_id) {
  Statement& st = db_.prepare("DELETE FROM escalations WHERE queue_item_id = ?");
  st.bind(1, queue_item_id);
  st.run();
}

std::vector<EscalationRow> ExecutionRepository::pendingEscalations() {
  Statement& st = db_.prepare(
      "SELECT queue_item_id, process_id, force_at, force_at_boot_ns, boot_id, created_at FROM escalations "
      "WHERE fired_at IS NULL ORDER BY force_at");
  std::vector<EscalationRow> rows;
  while (st.step()) {
    EscalationRow r;
    r.queue_item_id = st.getText(0);
    r.process_id = st.getText(1);
    r.force_at = st.getInt(2);
    r.force_at_boot_ns = st.getInt(3);
    r.boot_id = st.getText(4);
    r.created_at = st.getInt(5);
    rows.push_back(std::move(r));
  }
  st.reset();
  return rows;
}

}  // namespace phonefarm::store
