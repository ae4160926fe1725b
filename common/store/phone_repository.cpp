// SQL of phones and phone resets; see phone_repository.hpp.
#include "common/store/phone_repository.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "common/model/process_json.hpp"
#include "common/store/event_log.hpp"

namespace phonefarm::store {

std::optional<std::string> PhoneRepository::storedColumn(std::string_view sql, std::string_view phone_id) {
  Statement& st = db_.prepare(sql);
  st.bind(1, phone_id);
  std::optional<std::string> value;
  if (st.step()) value = st.getOptionalText(0);
  st.reset();
  return value;
}

void PhoneRepository::recordAdbState(std::string_view phone_id, std::string_view serial,
                                     const std::optional<std::string>& usb_port, std::string_view adb_state,
                                     WallMs now) {
  const auto previous = storedColumn("SELECT adb_state FROM phones WHERE phone_id = ?", phone_id);
  if (previous == adb_state) return;
  Statement& st = db_.prepare(
      "INSERT INTO phones (phone_id, serial, usb_port, health, updated_at, adb_state) VALUES (?, ?, ?, 'ready', ?, ?) "
      "ON CONFLICT (phone_id) DO UPDATE SET adb_state = excluded.adb_state, updated_at = excluded.updated_at");
  st.bind(1, phone_id).bind(2, serial).bind(3, usb_port).bind(4, now).bind(5, adb_state);
  st.run();
  boost::json::object payload{{"adb_state", adb_state}};
  payload["previous"] = previous ? boost::json::value(*previous) : boost::json::value(nullptr);
  EventLog(db_).append(event_kind::kPhoneState,
                       EventIds{std::nullopt, std::nullopt, std::string(phone_id), std::nullopt}, payload, now);
}

void PhoneRepository::upsertPhone(std::string_view phone_id, std::string_view serial,
                                  const std::optional<std::string>& usb_port, std::string_view health, WallMs now) {
  // A phone never stored counts as `ready` (the column's default).
  const std::string previous = storedColumn("SELECT health FROM phones WHERE phone_id = ?", phone_id).value_or("ready");
  Statement& st = db_.prepare(
      "INSERT INTO phones (phone_id, serial, usb_port, health, updated_at) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT (phone_id) DO UPDATE SET serial = excluded.serial, usb_port = excluded.usb_port, "
      "health = excluded.health, updated_at = excluded.updated_at");
  st.bind(1, phone_id).bind(2, serial).bind(3, usb_port).bind(4, health).bind(5, now);
  st.run();
  if (previous == health) return;
  boost::json::object payload{{"health", health}, {"previous", previous}};
  if (health == "needs_attention") {
    // Why: the attention stored with it (recordAttention runs first); a
    // stored needs_attention without one is a failed reset's (docs/api.md).
    const auto attention = storedColumn("SELECT attention FROM phones WHERE phone_id = ?", phone_id);
    payload["reason"] = attention ? attentionOf(*attention).value_or(StoredAttention{"reset_failed", "", 0}).reason
                                  : std::string("reset_failed");
  }
  EventLog(db_).append(event_kind::kPhoneHealth,
                       EventIds{std::nullopt, std::nullopt, std::string(phone_id), std::nullopt}, payload, now);
}

void PhoneRepository::recordAttention(std::string_view phone_id, std::string_view serial,
                                      const std::optional<std::string>& usb_port,
                                      const std::optional<StoredAttention>& attention, WallMs now) {
  std::optional<std::string> text;
  if (attention) {
    text = boost::json::serialize(
        boost::json::object{{"reason", attention->reason}, {"detail", attention->detail}, {"since", attention->since}});
  }
  const auto stored = storedColumn("SELECT attention FROM phones WHERE phone_id = ?", phone_id);
  Statement& st = db_.prepare(
      "INSERT INTO phones (phone_id, serial, usb_port, health, updated_at, attention) VALUES (?, ?, ?, 'ready', ?, ?) "
      "ON CONFLICT (phone_id) DO UPDATE SET attention = excluded.attention, updated_at = excluded.updated_at");
  st.bind(1, phone_id).bind(2, serial).bind(3, usb_port).bind(4, now).bind(5, text);
  st.run();
  if (stored == text) return;
  const std::optional<StoredAttention> previous = stored ? attentionOf(*stored) : std::nullopt;
  boost::json::object payload;
  payload["reason"] = attention ? boost::json::value(attention->reason) : boost::json::value(nullptr);
  payload["detail"] = attention ? boost::json::value(attention->detail) : boost::json::value(nullptr);
  payload["previous"] = previous ? boost::json::value(previous->reason) : boost::json::value(nullptr);
  EventLog(db_).append(event_kind::kPhoneAttention,
                       EventIds{std::nullopt, std::nullopt, std::string(phone_id), std::nullopt}, payload, now);
}

std::optional<StoredAttention> PhoneRepository::attentionOf(std::string_view text) {
  boost::system::error_code ec;
  const auto value = boost::json::parse(text, ec);
  const auto* o = !ec ? value.if_object() : nullptr;
  const auto* reason = o != nullptr ? o->if_contains("reason") : nullptr;
  if (reason == nullptr || !reason->is_string()) return std::nullopt;
  StoredAttention a;
  a.reason = std::string(reason->as_string());
  if (const auto* d = o->if_contains("detail"); d != nullptr && d->is_string()) a.detail = std::string(d->as_string());
  if (const auto* t = o->if_contains("since"); t != nullptr && t->is_int64()) a.since = t->as_int64();
  return a;
}

std::map<std::string, StoredAttention> PhoneRepository::attentionByPhone() {
  Statement& st = db_.prepare("SELECT phone_id, attention FROM phones WHERE attention IS NOT NULL");
  std::map<std::string, StoredAttention> out;
  while (st.step()) {
    if (auto a = attentionOf(st.getText(1))) out[st.getText(0)] = std::move(*a);
  }
  st.reset();
  return out;
}

void PhoneRepository::insertReset(const ResetRecord& r) {
  Statement& st = db_.prepare(
      "INSERT INTO phone_resets (reset_id, phone_id, trigger, status, reason, requested_by, requested_at, ended_at, "
      "steps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, r.reset_id)
      .bind(2, r.phone_id)
      .bind(3, r.trigger)
      .bind(4, r.status)
      .bind(5, r.reason)
      .bind(6, serializeObject(r.requested_by))
      .bind(7, r.requested_at)
      .bind(8, r.ended_at)
      .bind(9, boost::json::serialize(r.steps));
  st.run();
  // A ladder starts (pending), or a heal action is recorded without one.
  std::string_view kind;
  if (r.status == "pending" || r.status == "running") kind = event_kind::kResetStarted;
  if (r.status == "recorded") kind = event_kind::kResetRecorded;
  if (kind.empty()) return;
  boost::json::object payload{{"status", r.status}, {"trigger", r.trigger}};
  payload["reason"] = r.reason ? boost::json::value(*r.reason) : boost::json::value(nullptr);
  EventLog(db_).append(kind, EventIds{std::nullopt, std::nullopt, r.phone_id, r.reset_id}, payload, r.requested_at);
}

void PhoneRepository::updateReset(const ResetRecord& r, WallMs now) {
  Statement& old = db_.prepare("SELECT status, json_array_length(steps) FROM phone_resets WHERE reset_id = ?");
  old.bind(1, r.reset_id);
  std::string previous_status;
  std::size_t previous_steps = 0;
  const bool stored = old.step();
  if (stored) {
    previous_status = old.getText(0);
    previous_steps = static_cast<std::size_t>(old.getInt(1));
  }
  old.reset();
  Statement& st = db_.prepare("UPDATE phone_resets SET status = ?, ended_at = ?, steps = ? WHERE reset_id = ?");
  st.bind(1, r.status).bind(2, r.ended_at).bind(3, boost::json::serialize(r.steps)).bind(4, r.reset_id);
  st.run();
  if (!stored) return;
  const EventIds ids{std::nullopt, std::nullopt, r.phone_id, r.reset_id};
  EventLog log(db_);
  for (std::size_t i = previous_steps; i < r.steps.size(); ++i) {
    boost::json::object payload{{"index", static_cast<std::int64_t>(i)}, {"trigger", r.trigger}};
    if (const auto* step = r.steps[i].if_object()) {
      for (const char* key : {"step", "status", "detail"}) {
        if (const auto* v = step->if_contains(key)) payload[key] = *v;
      }
    }
    log.append(event_kind::kResetStep, ids, payload, now);
  }
  const bool final = r.status == "succeeded" || r.status == "failed";
  if (final && r.status != previous_status) {
    log.append(event_kind::kResetEnded, ids,
               boost::json::object{
                   {"status", r.status}, {"trigger", r.trigger}, {"steps", static_cast<std::int64_t>(r.steps.size())}},
               now);
  }
}

namespace {
constexpr std::string_view kResetColumns =
    "reset_id, phone_id, trigger, status, reason, requested_by, requested_at, ended_at, steps";
}  // namespace

ResetRecord PhoneRepository::readReset(Statement& st, int first) {
  ResetRecord r;
  r.reset_id = st.getText(first);
  r.phone_id = st.getText(first + 1);
  r.trigger = st.getText(first + 2);
  r.status = st.getText(first + 3);
  r.reason = st.getOptionalText(first + 4);
  if (auto by = st.getOptionalText(first + 5)) r.requested_by = parseStoredObject(*by);
  r.requested_at = st.getInt(first + 6);
  r.ended_at = st.getOptionalInt(first + 7);
  auto steps = boost::json::parse(st.getText(first + 8));
  if (steps.is_array()) r.steps = steps.as_array();
  return r;
}

std::optional<ResetRecord> PhoneRepository::lastReset(std::string_view phone_id) {
  // The history's order (listResets): seq, the order the records were made.
  static const std::string sql =
      "SELECT " + std::string(kResetColumns) + " FROM phone_resets WHERE phone_id = ? ORDER BY seq DESC LIMIT 1";
  Statement& st = db_.prepare(sql);
  st.bind(1, phone_id);
  std::optional<ResetRecord> out;
  if (st.step()) out = readReset(st, 0);
  st.reset();
  return out;
}

ResetPage PhoneRepository::listResets(std::string_view phone_id, std::optional<std::int64_t> before_seq,
                                      std::size_t limit) {
  static const std::string sql = "SELECT seq, " + std::string(kResetColumns) +
                                 " FROM phone_resets WHERE phone_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?";
  Statement& st = db_.prepare(sql);
  st.bind(1, phone_id).bind(2, before_seq.value_or(INT64_MAX)).bind(3, static_cast<std::int64_t>(limit + 1));
  ResetPage page;
  std::int64_t last_seq = 0;
  while (st.step()) {
    if (page.resets.size() == limit) {
      page.next_before_seq = last_seq;
      break;
    }
    last_seq = st.getInt(0);
    page.resets.push_back(readReset(st, 1));
  }
  st.reset();
  return page;
}

std::map<std::string, std::int64_t> PhoneRepository::queueDepths() {
  Statement& st = db_.prepare(
      "SELECT phone_id, COUNT(*) FROM processes WHERE status IN ('queued', 'running', 'cancelling') GROUP BY phone_id");
  std::map<std::string, std::int64_t> out;
  while (st.step()) out[st.getText(0)] = st.getInt(1);
  st.reset();
  return out;
}

}  // namespace phonefarm::store
