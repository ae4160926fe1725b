// SQL of the event log; see event_log.hpp.
#include "common/store/event_log.hpp"

#include <algorithm>
#include <array>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include "common/model/process_json.hpp"

namespace phonefarm::store {
namespace {

constexpr std::array<std::string_view, 14> kKinds{event_kind::kProcessSubmitted,     event_kind::kProcessStatus,
                                                  event_kind::kItemStarted,          event_kind::kItemEnded,
                                                  event_kind::kCancelAccepted,       event_kind::kTerminationIssued,
                                                  event_kind::kTerminationEscalated, event_kind::kPhoneState,
                                                  event_kind::kPhoneHealth,          event_kind::kResetStep,
                                                  event_kind::kResetEnded,           event_kind::kResetStarted,
                                                  event_kind::kResetRecorded,        event_kind::kPhoneAttention};

void appendField(std::string& out, std::string_view name, const std::optional<std::string>& value) {
  if (!value) return;
  out += ",\"";
  out += name;
  out += "\":";
  out += boost::json::serialize(boost::json::string(*value));
}

}  // namespace

bool isEventKind(std::string_view kind) { return std::find(kKinds.begin(), kKinds.end(), kind) != kKinds.end(); }

std::string eventJson(const Event& e) {
  std::string out = "{\"seq\":" + std::to_string(e.seq) + ",\"time\":\"" + formatRfc3339(e.time) + "\",\"kind\":";
  out += boost::json::serialize(boost::json::string(e.kind));
  appendField(out, "process_id", e.ids.process_id);
  appendField(out, "queue_item_id", e.ids.queue_item_id);
  appendField(out, "phone_id", e.ids.phone_id);
  appendField(out, "reset_id", e.ids.reset_id);
  out += ",\"payload\":";
  out += e.payload;  // written by append() from a JSON object
  out += '}';
  return out;
}

bool EventFilter::matches(const Event& e) const {
  if (process_id && e.ids.process_id != process_id) return false;
  if (phone_id && e.ids.phone_id != phone_id) return false;
  return kinds.empty() || std::find(kinds.begin(), kinds.end(), e.kind) != kinds.end();
}

void EventLog::append(std::string_view kind, const EventIds& ids, const boost::json::object& payload, WallMs time) {
  Statement& st = db_.prepare(
      "INSERT INTO events (time, kind, process_id, queue_item_id, phone_id, reset_id, payload) "
      "VALUES (?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, time)
      .bind(2, kind)
      .bind(3, ids.process_id)
      .bind(4, ids.queue_item_id)
      .bind(5, ids.phone_id)
      .bind(6, ids.reset_id)
      .bind(7, serializeObject(payload));
  st.run();
}

EventPage EventLog::readAfter(std::int64_t after, std::int64_t upto, const EventFilter& filter, std::size_t limit,
                              std::size_t scan) {
  // The id filters in SQL (NULL = any); kinds in C++ (a list).
  Statement& st = db_.prepare(
      "SELECT seq, time, kind, process_id, queue_item_id, phone_id, reset_id, payload FROM events "
      "WHERE seq > ?1 AND seq <= ?2 AND (?3 IS NULL OR process_id = ?3) AND (?4 IS NULL OR phone_id = ?4) "
      "ORDER BY seq LIMIT ?5");
  st.bind(1, after).bind(2, upto).bind(3, filter.process_id).bind(4, filter.phone_id);
  st.bind(5, static_cast<std::int64_t>(scan));
  EventPage page;
  page.scanned_to = after;
  std::size_t rows = 0;
  while (st.step()) {
    ++rows;
    Event e;
    e.seq = st.getInt(0);
    page.scanned_to = e.seq;
    e.kind = st.getText(2);
    if (!filter.kinds.empty() && std::find(filter.kinds.begin(), filter.kinds.end(), e.kind) == filter.kinds.end()) {
      continue;
    }
    e.time = st.getInt(1);
    e.ids.process_id = st.getOptionalText(3);
    e.ids.queue_item_id = st.getOptionalText(4);
    e.ids.phone_id = st.getOptionalText(5);
    e.ids.reset_id = st.getOptionalText(6);
    e.payload = st.getText(7);
    page.events.push_back(std::move(e));
    if (page.events.size() == limit) break;
  }
  // Fewer rows than asked for: nothing more up to `upto` matches the id filters.
  if (rows < scan && page.events.size() < limit) page.scanned_to = upto;
  st.reset();
  return page;
}

std::optional<std::int64_t> EventLog::oldestSeq() {
  Statement& st = db_.prepare("SELECT seq FROM events ORDER BY seq LIMIT 1");
  std::optional<std::int64_t> seq;
  if (st.step()) seq = st.getInt(0);
  st.reset();
  return seq;
}

std::int64_t EventLog::lastSeq() {
  Statement& st = db_.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'events'");
  std::int64_t seq = 0;
  if (st.step()) seq = st.getInt(0);
  st.reset();
  return seq;
}

std::int64_t EventLog::prune(WallMs cutoff, std::int64_t max_events, std::int64_t batch) {
  // Looks at the oldest `batch` rows only, never the whole table: seq order
  // is commit order, so the rows to drop are at the front (a clock stepped
  // back may hold a few of them a little longer; the count limit still holds).
  const std::int64_t keep_from = lastSeq() - max_events;  // seq <= this is beyond the newest max_events
  Statement& st = db_.prepare(
      "DELETE FROM events WHERE seq IN (SELECT seq FROM (SELECT seq, time FROM events ORDER BY seq LIMIT ?3) "
      "WHERE time < ?1 OR seq <= ?2)");
  st.bind(1, cutoff).bind(2, keep_from).bind(3, batch);
  st.run();
  return db_.changes();
}

}  // namespace phonefarm::store
