// SQL of the process model. Statements come from the Db's prepared-statement
// cache; no RETURNING (slow on SQLite 3.40), reads are separate statements.
#include "common/store/process_repository.hpp"

#include "common/model/process_json.hpp"
#include "common/store/event_log.hpp"

namespace phonefarm::store {
namespace {

#define PHONEFARM_PROCESS_COLUMNS                                                                                \
  "seq, process_id, status, phone_id, account_id, capability_request_id, requested_by, created_at, updated_at, " \
  "cancel_reason, cancel_strategy, cancel_requested_at, cancel_force_at, cancel_requested_by"
// Literals, not strings built per call: the statement cache is keyed by this text.
constexpr const char* kSelectProcess = "SELECT " PHONEFARM_PROCESS_COLUMNS " FROM processes WHERE process_id = ?";
constexpr const char* kListProcesses =
    "SELECT " PHONEFARM_PROCESS_COLUMNS
    " FROM processes WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR phone_id = ?2)"
    " AND seq < ?3 ORDER BY seq DESC LIMIT ?4";
#undef PHONEFARM_PROCESS_COLUMNS

template <class E>
E parseOrThrow(std::optional<E> v, std::string_view what) {
  if (!v) throw std::runtime_error("corrupt stored " + std::string(what));
  return *v;
}

}  // namespace

bool ProcessRepository::processExists(std::string_view process_id) {
  Statement& st = db_.prepare("SELECT 1 FROM processes WHERE process_id = ?");
  st.bind(1, process_id);
  const bool found = st.step();
  st.reset();
  return found;
}

std::vector<std::string> ProcessRepository::existingQueueItems(const std::vector<std::string>& ids) {
  std::vector<std::string> found;
  Statement& st = db_.prepare("SELECT 1 FROM queue_items WHERE queue_item_id = ?");
  for (const auto& id : ids) {
    st.reset();
    st.bind(1, id);
    if (st.step()) found.push_back(id);
  }
  st.reset();
  return found;
}

void ProcessRepository::insertProcess(const Process& p) {
  Statement& ins = db_.prepare(
      "INSERT INTO processes (process_id, status, phone_id, account_id, capability_request_id, requested_by, "
      "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  ins.bind(1, p.process_id)
      .bind(2, toString(p.status))
      .bind(3, p.phone_id)
      .bind(4, p.account_id)
      .bind(5, p.capability_request_id)
      .bind(6, serializeObject(p.requested_by))
      .bind(7, p.created_at)
      .bind(8, p.updated_at);
  ins.run();
  Statement& item = db_.prepare(
      "INSERT INTO queue_items (queue_item_id, process_id, position, status, command, env, timeout_seconds, "
      "stop_signal) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  for (const auto& it : p.items) {
    item.reset();
    item.bind(1, it.queue_item_id)
        .bind(2, p.process_id)
        .bind(3, it.position)
        .bind(4, toString(it.status))
        .bind(5, serializeCommand(it.command))
        .bind(6, serializeEnv(it.env))
        .bind(7, it.timeout_seconds)
        .bind(8, it.stop_signal);
    item.run();
  }
  EventLog(db_).append(
      event_kind::kProcessSubmitted, EventIds{p.process_id, std::nullopt, p.phone_id, std::nullopt},
      boost::json::object{{"status", toString(p.status)}, {"items", static_cast<std::int64_t>(p.items.size())}},
      p.created_at);
}

Process ProcessRepository::readProcessRow(Statement& st) {
  Process p;
  p.process_id = st.getText(1);
  p.status = parseOrThrow(parseProcessStatus(st.getText(2)), "process status");
  p.phone_id = st.getText(3);
  p.account_id = st.getText(4);
  p.capability_request_id = st.getText(5);
  p.requested_by = parseStoredObject(st.getText(6));
  p.created_at = st.getInt(7);
  p.updated_at = st.getInt(8);
  if (!st.isNull(9)) {
    CancelRecord c;
    c.reason = st.getText(9);
    c.strategy = parseOrThrow(parseCancelStrategy(st.getText(10)), "cancel strategy");
    c.requested_at = st.getInt(11);
    c.force_at = st.getOptionalInt(12);
    c.requested_by = parseStoredObject(st.getText(13));
    p.cancel = std::move(c);
  }
  return p;
}

std::vector<QueueItem> ProcessRepository::loadItems(std::string_view process_id) {
  Statement& st = db_.prepare(
      "SELECT queue_item_id, position, status, command, env, timeout_seconds, stop_signal, started_at, ended_at, "
      "exit_code, signal, note FROM queue_items WHERE process_id = ? ORDER BY position");
  st.bind(1, process_id);
  std::vector<QueueItem> items;
  while (st.step()) {
    QueueItem it;
    it.queue_item_id = st.getText(0);
    it.position = static_cast<int>(st.getInt(1));
    it.status = parseOrThrow(parseItemStatus(st.getText(2)), "item status");
    it.command = parseStoredCommand(st.getText(3));
    it.env = parseStoredEnv(st.getText(4));
    it.timeout_seconds = st.getOptionalInt(5);
    it.stop_signal = st.getText(6);
    it.started_at = st.getOptionalInt(7);
    it.ended_at = st.getOptionalInt(8);
    it.exit_code = st.getOptionalInt(9);
    it.signal = st.getOptionalText(10);
    it.note = st.getOptionalText(11);
    items.push_back(std::move(it));
  }
  st.reset();
  return items;
}

std::optional<Process> ProcessRepository::loadProcess(std::string_view process_id) {
  Statement& st = db_.prepare(kSelectProcess);
  st.bind(1, process_id);
  if (!st.step()) {
    st.reset();
    return std::nullopt;
  }
  Process p = readProcessRow(st);
  st.reset();
  p.items = loadItems(p.process_id);
  return p;
}

ProcessPage ProcessRepository::listProcesses(const ProcessFilter& f) {
  // One statement for every filter combination: absent filters bind NULL and
  // short-circuit. SQLite walks seq downwards and filters, which suits
  // newest-first paging; a rare filter on a huge table scans further.
  Statement& st = db_.prepare(kListProcesses);
  if (f.status) {
    st.bind(1, toString(*f.status));
  } else {
    st.bindNull(1);
  }
  st.bind(2, f.phone_id);
  st.bind(3, f.before_seq.value_or(INT64_MAX));
  st.bind(4, static_cast<std::int64_t>(f.limit + 1));
  ProcessPage page;
  std::vector<std::int64_t> seqs;
  while (st.step()) {
    if (page.processes.size() == f.limit) {
      page.next_before_seq = seqs.back();
      break;
    }
    seqs.push_back(st.getInt(0));
    page.processes.push_back(readProcessRow(st));
  }
  st.reset();
  for (auto& p : page.processes) p.items = loadItems(p.process_id);
  return page;
}

std::optional<std::string> ProcessRepository::processIdOfItem(std::string_view queue_item_id) {
  Statement& st = db_.prepare("SELECT process_id FROM queue_items WHERE queue_item_id = ?");
  st.bind(1, queue_item_id);
  std::optional<std::string> id;
  if (st.step()) id = st.getText(0);
  st.reset();
  return id;
}

void ProcessRepository::updateProcessState(const Process& p) {
  // The stored status first: process.status is emitted only for a change.
  Statement& old = db_.prepare("SELECT status FROM processes WHERE process_id = ?");
  old.bind(1, p.process_id);
  std::optional<std::string> previous;
  if (old.step()) previous = old.getText(0);
  old.reset();
  Statement& st = db_.prepare(
      "UPDATE processes SET status = ?, updated_at = ?, cancel_reason = ?, cancel_strategy = ?, "
      "cancel_requested_at = ?, cancel_force_at = ?, cancel_requested_by = ? WHERE process_id = ?");
  st.bind(1, toString(p.status)).bind(2, p.updated_at);
  if (p.cancel) {
    st.bind(3, p.cancel->reason)
        .bind(4, toString(p.cancel->strategy))
        .bind(5, p.cancel->requested_at)
        .bind(6, p.cancel->force_at)
        .bind(7, serializeObject(p.cancel->requested_by));
  } else {
    st.bindNull(3).bindNull(4).bindNull(5).bindNull(6).bindNull(7);
  }
  st.bind(8, p.process_id);
  st.run();
  const std::string_view status = toString(p.status);
  if (previous && *previous != status) {
    EventLog(db_).append(event_kind::kProcessStatus, EventIds{p.process_id, std::nullopt, p.phone_id, std::nullopt},
                         boost::json::object{{"status", status}, {"previous", *previous}}, p.updated_at);
  }
}

void ProcessRepository::updateItemState(const QueueItem& it) {
  // The stored status (and the ids the events carry): item.started and
  // item.ended are emitted on the transitions only, not on a note.
  Statement& old = db_.prepare(
      "SELECT q.status, q.process_id, p.phone_id FROM queue_items q JOIN processes p USING (process_id) "
      "WHERE q.queue_item_id = ?");
  old.bind(1, it.queue_item_id);
  std::optional<ItemStatus> previous;
  EventIds ids{std::nullopt, it.queue_item_id, std::nullopt, std::nullopt};
  if (old.step()) {
    previous = parseItemStatus(old.getText(0));
    ids.process_id = old.getText(1);
    ids.phone_id = old.getText(2);
  }
  old.reset();
  Statement& st = db_.prepare(
      "UPDATE queue_items SET status = ?, started_at = ?, ended_at = ?, exit_code = ?, signal = ?, note = ? "
      "WHERE queue_item_id = ?");
  st.bind(1, toString(it.status))
      .bind(2, it.started_at)
      .bind(3, it.ended_at)
      .bind(4, it.exit_code)
      .bind(5, it.signal)
      .bind(6, it.note)
      .bind(7, it.queue_item_id);
  st.run();
  if (!previous || *previous == it.status) return;
  if (it.status == ItemStatus::kExecuting) {
    EventLog(db_).append(event_kind::kItemStarted, ids, boost::json::object{{"position", it.position}},
                         it.started_at.value_or(0));
  } else if (isTerminal(it.status) && !isTerminal(*previous)) {
    boost::json::object payload{{"status", toString(it.status)}};
    payload["exit_code"] = it.exit_code ? boost::json::value(*it.exit_code) : boost::json::value(nullptr);
    payload["signal"] = it.signal ? boost::json::value(*it.signal) : boost::json::value(nullptr);
    if (it.note) payload["note"] = *it.note;
    EventLog(db_).append(event_kind::kItemEnded, ids, payload, it.ended_at.value_or(0));
  }
}

void ProcessRepository::appendAudit(const CancelAuditEntry& e) {
  Statement& st = db_.prepare(
      "INSERT INTO cancel_audit (process_id, queue_item_id, endpoint, requested_at, reason, strategy, "
      "force_after_seconds, requested_by, outcome, termination_status, detail) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, e.process_id)
      .bind(2, e.queue_item_id)
      .bind(3, e.endpoint)
      .bind(4, e.requested_at)
      .bind(5, e.reason)
      .bind(6, toString(e.strategy))
      .bind(7, e.force_after_seconds)
      .bind(8, serializeObject(e.requested_by))
      .bind(9, e.outcome)
      .bind(10, e.termination_status)
      .bind(11, e.detail);
  st.run();
  if (e.outcome == "ignored_terminal") return;  // a cancel of an ended process changes nothing
  Statement& phone = db_.prepare("SELECT phone_id FROM processes WHERE process_id = ?");
  phone.bind(1, e.process_id);
  std::optional<std::string> phone_id;
  if (phone.step()) phone_id = phone.getText(0);
  phone.reset();
  const EventIds ids{e.process_id, e.queue_item_id, phone_id, std::nullopt};
  EventLog log(db_);
  log.append(event_kind::kCancelAccepted, ids,
             boost::json::object{{"endpoint", e.endpoint},
                                 {"strategy", toString(e.strategy)},
                                 {"force_after_seconds", e.force_after_seconds},
                                 {"reason", e.reason},
                                 {"termination", e.termination_status}},
             e.requested_at);
  // The cancel reached an executing item: its termination is decided with it
  // (a signal now, a kill now, or a kill scheduled).
  if (e.termination_status == "issued" || e.termination_status == "scheduled" || e.termination_status == "requested") {
    log.append(event_kind::kTerminationIssued, ids,
               boost::json::object{
                   {"termination", e.termination_status}, {"strategy", toString(e.strategy)}, {"cause", "cancel"}},
               e.requested_at);
  }
}

std::vector<CancelAuditEntry> ProcessRepository::loadAudit(std::string_view process_id) {
  Statement& st = db_.prepare(
      "SELECT id, queue_item_id, endpoint, requested_at, reason, strategy, force_after_seconds, requested_by, "
      "outcome, termination_status, detail FROM cancel_audit WHERE process_id = ? ORDER BY id");
  st.bind(1, process_id);
  std::vector<CancelAuditEntry> out;
  while (st.step()) {
    CancelAuditEntry e;
    e.id = st.getInt(0);
    e.process_id = std::string(process_id);
    e.queue_item_id = st.getOptionalText(1);
    e.endpoint = st.getText(2);
    e.requested_at = st.getInt(3);
    e.reason = st.getText(4);
    e.strategy = parseOrThrow(parseCancelStrategy(st.getText(5)), "audit strategy");
    e.force_after_seconds = st.getInt(6);
    e.requested_by = parseStoredObject(st.getText(7));
    e.outcome = st.getText(8);
    e.termination_status = st.getText(9);
    e.detail = st.getOptionalText(10);
    out.push_back(std::move(e));
  }
  st.reset();
  return out;
}

}  // namespace phonefarm::store
