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

#include "common/clock.hpp"
#include "common/store/sqlite_db.hpp"

namespace phonefarm::store {

struct ResetRecord {
  std::string reset_id;
  std::string phone_id;
  std::string trigger;  // "forced_cancel" | "timeout" | "technician"
  std::string status;   // "pending" | "running" | "succeeded" | "failed"
  std::optional<std::string> reason;
  boost::json::object requested_by;
  WallMs requested_at = 0;
  std::optional<WallMs> ended_at;
  boost::json::array steps;  // [{"step","status","started_at","ended_at","detail"}]
};

class PhoneRepository {
 public:
  explicit PhoneRepository(Db& db) : db_(db) {}

  void upsertPhone(std::string_view phone_id, std::string_view serial, const std::optional<std::string>& usb_port,
                   std::string_view health, WallMs now);
  // Stored health by phone id.
  std::map<std::string, std::string> healthByPhone();

  void insertReset(const ResetRecord& r);
  void updateReset(const ResetRecord& r);  // status, ended_at, steps
  std::optional<ResetRecord> lastReset(std::string_view phone_id);
  // Unfinished processes per phone (queued, running, cancelling).
  std::map<std::string, std::int64_t> queueDepths();

 private:
  Db& db_;
};

}  // namespace phonefarm::store
