// JSON rendering of the model, exactly the shapes of docs/api.md (process object,
// queue item, cancel record) plus the audit trail entry.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <optional>
#include <string>

#include "common/model/process.hpp"

namespace phonefarm {

boost::json::object toJson(const QueueItem& item);
boost::json::object toJson(const CancelRecord& cancel);
boost::json::object toJson(const CancelAuditEntry& entry);
// The process object of docs/api.md. `audit`, when given, is added as
// "cancel_audit" (GET /processes/{id} shows the whole trail).
boost::json::object toJson(const Process& process, const std::vector<CancelAuditEntry>* audit = nullptr);

boost::json::value optionalTime(const std::optional<WallMs>& t);

// requested_by and env are stored as compact JSON text.
std::string serializeObject(const boost::json::object& obj);
boost::json::object parseStoredObject(std::string_view text);
std::string serializeCommand(const std::vector<std::string>& argv);
std::vector<std::string> parseStoredCommand(std::string_view text);
std::string serializeEnv(const EnvList& env);
EnvList parseStoredEnv(std::string_view text);

}  // namespace phonefarm
