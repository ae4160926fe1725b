// PhoneRepository: phone health that must survive a restart (a phone that
// needs a technician stays that way) and the reset records with their steps.
// Like the other repositories, every function runs inside a Store job. It
// returns data; the API's JSON for a reset record is agent/api/phones_api.cpp.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "common/store/sqlite_db.hpp"

namespace phonefarm::store {

struct ResetRecord {
  std::string reset_id;
  std::string phone_id;
  std::string trigger;  // "forced_cancel" | "timeout" | "technician" | "auto" | "probe" | ...
  std::string status;   // "pending" | "running" | "succeeded" | "failed" | "recorded"
  std::optional<std::string> reason;
  boost::json::object requested_by;
  WallMs requested_at = 0;
  std::optional<WallMs> ended_at;
  boost::json::array steps;  // [{"step","status","started_at","ended_at","detail"}]
};

// One page of a phone's reset history, newest first (GET /phones/{id}/resets).
struct ResetPage {
  std::vector<ResetRecord> resets;
  std::optional<std::int64_t> next_before_seq;  // set when more rows may follow
};

// Why a phone needs a technician, as stored (phones.attention).
struct StoredAttention {
  std::string reason;
  std::string detail;
  WallMs since = 0;
};

class PhoneRepository {
 public:
  explicit PhoneRepository(Db& db) : db_(db) {}

  // Appends phone.health when the stored health changes (with the stored
  // attention's reason when it becomes needs_attention).
  void upsertPhone(std::string_view phone_id, std::string_view serial, const std::optional<std::string>& usb_port,
                   std::string_view health, WallMs now);
  // Records the phone's adb state; appends phone.state when it differs from
  // the one stored (a phone not stored yet is added with health `ready`).
  void recordAdbState(std::string_view phone_id, std::string_view serial, const std::optional<std::string>& usb_port,
                      std::string_view adb_state, WallMs now);
  // Stores (or clears, with nullopt) why the phone needs a technician (a
  // phone not stored yet is added with health `ready`); appends
  // phone.attention when it differs from the one stored.
  void recordAttention(std::string_view phone_id, std::string_view serial, const std::optional<std::string>& usb_port,
                       const std::optional<StoredAttention>& attention, WallMs now);
  // The stored attention of every phone that has one; rows whose JSON is not
  // an object with a string reason are skipped.
  std::map<std::string, StoredAttention> attentionByPhone();

  // Appends reset.started for a ladder's record (pending, running) and
  // reset.recorded for a heal action's (recorded).
  void insertReset(const ResetRecord& r);
  // Status, ended_at, steps; appends reset.step for each step added since the
  // stored record and reset.ended when the status becomes final.
  void updateReset(const ResetRecord& r, WallMs now);
  // The phone's latest reset: the last one recorded (highest seq).
  std::optional<ResetRecord> lastReset(std::string_view phone_id);
  // At most `limit` of the phone's resets with seq < before_seq (all when
  // unset), newest (highest seq) first. Reads `limit` + 1 rows of the
  // (phone_id, seq) index, whatever the history's length.
  ResetPage listResets(std::string_view phone_id, std::optional<std::int64_t> before_seq, std::size_t limit);
  // Unfinished processes per phone (queued, running, cancelling).
  std::map<std::string, std::int64_t> queueDepths();

 private:
  // The stored column `column` of the phone, nullopt for no row (or NULL).
  std::optional<std::string> storedColumn(std::string_view sql, std::string_view phone_id);
  // The stored attention JSON read back; nullopt unless an object with a string reason.
  static std::optional<StoredAttention> attentionOf(std::string_view text);
  // The reset row at the statement's cursor, from column `first` on (kResetColumns).
  static ResetRecord readReset(Statement& st, int first);
  Db& db_;
};

}  // namespace phonefarm::store
