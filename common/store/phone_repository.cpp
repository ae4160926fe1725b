// SQL of phones and phone resets; see phone_repository.hpp.
#include "common/store/phone_repository.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "common/model/process_json.hpp"

namespace phonefarm::store {

void PhoneRepository::upsertPhone(std::string_view phone_id, std::string_view serial,
                                  const std::optional<std::string>& usb_port, std::string_view health, WallMs now) {
  Statement& st = db_.prepare(
      "INSERT INTO phones (phone_id, serial, usb_port, health, updated_at) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT (phone_id) DO UPDATE SET serial = excluded.serial, usb_port = excluded.usb_port, "
      "health = excluded.health, updated_at = excluded.updated_at");
  st.bind(1, phone_id).bind(2, serial).bind(3, usb_port).bind(4, health).bind(5, now);
  st.run();
}

std::map<std::string, std::string> PhoneRepository::healthByPhone() {
  Statement& st = db_.prepare("SELECT phone_id, health FROM phones");
  std::map<std::string, std::string> out;
  while (st.step()) out[st.getText(0)] = st.getText(1);
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
}

void PhoneRepository::updateReset(const ResetRecord& r) {
  Statement& st = db_.prepare("UPDATE phone_resets SET status = ?, ended_at = ?, steps = ? WHERE reset_id = ?");
  st.bind(1, r.status).bind(2, r.ended_at).bind(3, boost::json::serialize(r.steps)).bind(4, r.reset_id);
  st.run();
}

std::optional<ResetRecord> PhoneRepository::lastReset(std::string_view phone_id) {
  Statement& st = db_.prepare(
      "SELECT reset_id, phone_id, trigger, status, reason, requested_by, requested_at, ended_at, steps "
      "FROM phone_resets WHERE phone_id = ? ORDER BY requested_at DESC, rowid DESC LIMIT 1");
  st.bind(1, phone_id);
  std::optional<ResetRecord> out;
  if (st.step()) {
    ResetRecord r;
    r.reset_id = st.getText(0);
    r.phone_id = st.getText(1);
    r.trigger = st.getText(2);
    r.status = st.getText(3);
    r.reason = st.getOptionalText(4);
    if (auto by = st.getOptionalText(5)) r.requested_by = parseStoredObject(*by);
    r.requested_at = st.getInt(6);
    r.ended_at = st.getOptionalInt(7);
    auto steps = boost::json::parse(st.getText(8));
    if (steps.is_array()) r.steps = steps.as_array();
    out = std::move(r);
  }
  st.reset();
  return out;
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
