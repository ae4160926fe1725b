// JSON codecs of the model. Stored JSON was written by this file, so the
// parse side treats a malformed value as corruption (std::runtime_error).
#include "common/model/process_json.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <stdexcept>

namespace phonefarm {

boost::json::value optionalTime(const std::optional<WallMs>& t) {
  if (!t) return nullptr;
  return boost::json::string(formatRfc3339(*t));
}

namespace {

template <class T>
boost::json::value optionalValue(const std::optional<T>& v) {
  if (!v) return nullptr;
  return boost::json::value(*v);
}

}  // namespace

boost::json::object toJson(const QueueItem& item) {
  boost::json::array command;
  command.reserve(item.command.size());
  for (const auto& arg : item.command) command.emplace_back(arg);
  boost::json::object o;
  o.reserve(12);
  o["queue_item_id"] = item.queue_item_id;
  o["position"] = item.position;
  o["status"] = toString(item.status);
  o["command"] = std::move(command);
  o["timeout_seconds"] = optionalValue(item.timeout_seconds);
  o["stop_signal"] = item.stop_signal;
  o["started_at"] = optionalTime(item.started_at);
  o["ended_at"] = optionalTime(item.ended_at);
  o["exit_code"] = optionalValue(item.exit_code);
  o["signal"] = optionalValue(item.signal);
  o["note"] = optionalValue(item.note);
  return o;
}

boost::json::object toJson(const CancelRecord& cancel) {
  boost::json::object o;
  o["reason"] = cancel.reason;
  o["strategy"] = toString(cancel.strategy);
  o["requested_at"] = formatRfc3339(cancel.requested_at);
  o["force_at"] = optionalTime(cancel.force_at);
  o["requested_by"] = cancel.requested_by;
  return o;
}

boost::json::object toJson(const CancelAuditEntry& e) {
  boost::json::object o;
  o["requested_at"] = formatRfc3339(e.requested_at);
  o["endpoint"] = e.endpoint;
  o["queue_item_id"] = optionalValue(e.queue_item_id);
  o["reason"] = e.reason;
  o["strategy"] = toString(e.strategy);
  o["force_after_seconds"] = e.force_after_seconds;
  o["requested_by"] = e.requested_by;
  o["outcome"] = e.outcome;
  o["termination_status"] = e.termination_status;
  o["detail"] = optionalValue(e.detail);
  return o;
}

boost::json::object toJson(const Process& p, const std::vector<CancelAuditEntry>* audit) {
  boost::json::array items;
  items.reserve(p.items.size());
  for (const auto& item : p.items) items.emplace_back(toJson(item));
  boost::json::object o;
  o.reserve(12);
  o["process_id"] = p.process_id;
  o["status"] = toString(p.status);
  o["phone_id"] = p.phone_id;
  o["account_id"] = p.account_id;
  o["capability_request_id"] = p.capability_request_id;
  o["requested_by"] = p.requested_by;
  o["created_at"] = formatRfc3339(p.created_at);
  o["updated_at"] = formatRfc3339(p.updated_at);
  o["cancel"] = p.cancel ? boost::json::value(toJson(*p.cancel)) : boost::json::value(nullptr);
  o["queue_items"] = std::move(items);
  if (audit) {
    boost::json::array trail;
    for (const auto& e : *audit) trail.emplace_back(toJson(e));
    o["cancel_audit"] = std::move(trail);
  }
  return o;
}

std::string serializeObject(const boost::json::object& obj) { return boost::json::serialize(obj); }

boost::json::object parseStoredObject(std::string_view text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) throw std::runtime_error("corrupt stored JSON object");
  return std::move(v.as_object());
}

std::string serializeCommand(const std::vector<std::string>& argv) {
  boost::json::array a;
  for (const auto& s : argv) a.emplace_back(s);
  return boost::json::serialize(a);
}

std::vector<std::string> parseStoredCommand(std::string_view text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_array()) throw std::runtime_error("corrupt stored command");
  std::vector<std::string> out;
  for (const auto& e : v.as_array()) out.emplace_back(e.as_string());
  return out;
}

std::string serializeEnv(const EnvList& env) {
  boost::json::object o;
  for (const auto& [k, v] : env) o[k] = v;
  return boost::json::serialize(o);
}

EnvList parseStoredEnv(std::string_view text) {
  EnvList env;
  for (const auto& kv : parseStoredObject(text))
    env.emplace_back(std::string(kv.key()), std::string(kv.value().as_string()));
  return env;
}

}  // namespace phonefarm
