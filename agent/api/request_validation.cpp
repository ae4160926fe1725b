// Field-by-field validation of the API's request bodies (docs/api.md), reporting
// every problem at once in Pydantic's vocabulary, which the control plane
// already parses.
#include "agent/api/request_validation.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <charconv>
#include <csignal>

#include "agent/exec/env_policy.hpp"
#include "common/ids.hpp"

namespace phonefarm::api {
namespace {

namespace json = boost::json;

class Errors {
 public:
  void add(json::array loc, std::string msg, std::string type) {
    list_.push_back(FieldError{std::move(loc), std::move(msg), std::move(type)});
  }
  bool empty() const { return list_.empty(); }
  FieldErrors take() { return std::move(list_); }

 private:
  FieldErrors list_;
};

json::array at(const json::array& base, json::value key) {
  json::array loc = base;
  loc.push_back(std::move(key));
  return loc;
}

// Parses the body as a JSON object; on failure fills `errors` the way FastAPI does.
std::optional<json::object> parseObject(std::string_view body, Errors& errors) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    errors.add(json::array{"body"}, "Field required", "missing");
    return std::nullopt;
  }
  json::parse_options opts;
  opts.max_depth = 32;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec, {}, opts);
  if (ec) {
    errors.add(json::array{"body"}, "JSON decode error: " + ec.message(), "json_invalid");
    return std::nullopt;
  }
  if (!v.is_object()) {
    errors.add(json::array{"body"}, "Input should be a valid dictionary or object to extract fields from",
               "model_attributes_type");
    return std::nullopt;
  }
  return std::move(v.as_object());
}

const json::value* field(const json::object& obj, std::string_view key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &it->value();
}

bool hasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// A required or optional string with length bounds. Returns nullopt on error or absence.
std::optional<std::string> stringField(const json::object& obj, std::string_view key, const json::array& base,
                                       Errors& errors, bool required, std::size_t max_len) {
  const json::value* v = field(obj, key);
  auto loc = at(base, json::string(key));
  if (v == nullptr || (!required && v->is_null())) {
    if (required) errors.add(std::move(loc), "Field required", "missing");
    return std::nullopt;
  }
  if (!v->is_string()) {
    errors.add(std::move(loc), "Input should be a valid string", "string_type");
    return std::nullopt;
  }
  std::string_view s = v->as_string();
  if (s.empty()) {
    errors.add(std::move(loc), "String should have at least 1 character", "string_too_short");
    return std::nullopt;
  }
  if (s.size() > max_len) {
    errors.add(std::move(loc), "String should have at most " + std::to_string(max_len) + " characters",
               "string_too_long");
    return std::nullopt;
  }
  if (hasNul(s)) {
    errors.add(std::move(loc), "Value error, must not contain NUL characters", "value_error");
    return std::nullopt;
  }
  return std::string(s);
}

std::optional<std::string> idField(const json::object& obj, std::string_view key, const json::array& base,
                                   Errors& errors, bool required) {
  const json::value* v = field(obj, key);
  if (v != nullptr && v->is_string() && !isValidId(v->as_string())) {
    errors.add(at(base, json::string(key)), "String should match pattern '" + std::string(kIdPattern) + "'",
               "string_pattern_mismatch");
    return std::nullopt;
  }
  return stringField(obj, key, base, errors, required, kMaxIdLength);
}

std::optional<json::object> objectField(const json::object& obj, std::string_view key, const json::array& base,
                                        Errors& errors, bool required) {
  const json::value* v = field(obj, key);
  if (v == nullptr || (!required && v->is_null())) {
    if (required) errors.add(at(base, json::string(key)), "Field required", "missing");
    return std::nullopt;
  }
  if (!v->is_object()) {
    errors.add(at(base, json::string(key)), "Input should be a valid dictionary", "dict_type");
    return std::nullopt;
  }
  return v->as_object();
}

// An integer in [lo, hi]; JSON null or absence gives nullopt without error.
// Floats, strings and booleans are rejected (strict: "1.5", "10", true are 422).
std::optional<std::int64_t> intField(const json::object& obj, std::string_view key, const json::array& base,
                                     Errors& errors, std::int64_t lo, std::int64_t hi, bool& bad) {
  const json::value* v = field(obj, key);
  bad = false;
  if (v == nullptr || v->is_null()) return std::nullopt;
  auto loc = at(base, json::string(key));
  bad = true;
  if (v->is_uint64()) {  // only values above INT64_MAX are stored as uint64
    errors.add(std::move(loc), "Input should be less than or equal to " + std::to_string(hi), "less_than_equal");
    return std::nullopt;
  }
  if (!v->is_int64()) {
    errors.add(std::move(loc), "Input should be a valid integer", "int_type");
    return std::nullopt;
  }
  const std::int64_t n = v->as_int64();
  if (n < lo) {
    errors.add(std::move(loc), "Input should be greater than or equal to " + std::to_string(lo), "greater_than_equal");
    return std::nullopt;
  }
  if (n > hi) {
    errors.add(std::move(loc), "Input should be less than or equal to " + std::to_string(hi), "less_than_equal");
    return std::nullopt;
  }
  bad = false;
  return n;
}

bool isEnvName(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

bool isReservedEnv(std::string_view s) { return exec::isAgentSetEnvName(s); }

// Fills spec.command; then, if every argument was valid, asks `command_allowed` about the program.
void parseCommand(const json::object& item, const json::array& base, Errors& errors, ItemSpec& spec,
                  const CommandCheck& command_allowed) {
  const json::value* v = field(item, "command");
  auto loc = at(base, "command");
  if (v == nullptr) return errors.add(std::move(loc), "Field required", "missing");
  if (!v->is_array()) return errors.add(std::move(loc), "Input should be a valid list", "list_type");
  const auto& arr = v->as_array();
  if (arr.empty()) {
    return errors.add(std::move(loc), "List should have at least 1 item after validation, not 0", "too_short");
  }
  for (std::size_t i = 0; i < arr.size(); ++i) {
    auto arg_loc = at(loc, static_cast<std::int64_t>(i));
    if (!arr[i].is_string()) {
      errors.add(std::move(arg_loc), "Input should be a valid string", "string_type");
      continue;
    }
    std::string_view arg = arr[i].as_string();
    if (hasNul(arg)) {
      errors.add(std::move(arg_loc), "Value error, must not contain NUL characters", "value_error");
    } else if (i == 0 && !arg.starts_with('/')) {
      errors.add(std::move(arg_loc), "Value error, the program must be an absolute path", "value_error");
    } else {
      spec.command.emplace_back(arg);
    }
  }
  if (command_allowed && spec.command.size() == arr.size()) {
    if (auto refusal = command_allowed(spec.command.front())) {
      errors.add(at(loc, std::int64_t{0}), "Value error, " + *refusal, "value_error");
    }
  }
}

void parseEnv(const json::object& item, const json::array& base, Errors& errors, ItemSpec& spec,
              const EnvCheck& env_allowed) {
  auto env = objectField(item, "env", base, errors, false);
  if (!env) return;
  auto loc = at(base, "env");
  for (const auto& kv : *env) {
    auto key_loc = at(loc, json::string(kv.key()));
    if (!isEnvName(kv.key())) {
      errors.add(std::move(key_loc), "Value error, not a valid environment variable name", "value_error");
    } else if (isReservedEnv(kv.key())) {
      errors.add(std::move(key_loc), "Value error, PHONEFARM_* and ANDROID_SERIAL are set by the agent", "value_error");
    } else if (auto refusal = env_allowed ? env_allowed(std::string_view(kv.key())) : std::nullopt) {
      errors.add(std::move(key_loc), "Value error, " + std::string(kv.key()) + " may not be set: " + *refusal,
                 "value_error");
    } else if (!kv.value().is_string()) {
      errors.add(std::move(key_loc), "Input should be a valid string", "string_type");
    } else if (hasNul(kv.value().as_string())) {
      errors.add(std::move(key_loc), "Value error, must not contain NUL characters", "value_error");
    } else {
      spec.env.emplace_back(std::string(kv.key()), std::string(kv.value().as_string()));
    }
  }
}

std::optional<ItemSpec> parseItem(const json::value& v, const json::array& loc, Errors& errors,
                                  const CommandCheck& command_allowed, const EnvCheck& env_allowed) {
  if (!v.is_object()) {
    errors.add(loc, "Input should be a valid dictionary or object to extract fields from", "model_attributes_type");
    return std::nullopt;
  }
  const auto& obj = v.as_object();
  ItemSpec spec;
  spec.queue_item_id = idField(obj, "queue_item_id", loc, errors, false);
  parseCommand(obj, loc, errors, spec, command_allowed);
  parseEnv(obj, loc, errors, spec, env_allowed);
  bool bad = false;
  spec.timeout_seconds = intField(obj, "timeout_seconds", loc, errors, 1, kMaxTimeoutSeconds, bad);
  if (const json::value* sig = field(obj, "stop_signal"); sig != nullptr && !sig->is_null()) {
    if (!sig->is_string()) {
      errors.add(at(loc, "stop_signal"), "Input should be a valid string", "string_type");
    } else if (!isValidStopSignal(sig->as_string())) {
      errors.add(at(loc, "stop_signal"),
                 "Value error, must be a catchable signal name such as 'SIGTERM' or 'SIGINT', or 'none'",
                 "value_error");
    } else {
      spec.stop_signal = std::string(sig->as_string());
    }
  }
  return spec;
}

}  // namespace

Validated<CancelRequest> parseCancelRequest(std::string_view body) {
  Errors errors;
  auto obj = parseObject(body, errors);
  if (!obj) return errors.take();
  const json::array base{"body"};
  CancelRequest req;
  auto reason = stringField(*obj, "reason", base, errors, true, kMaxReasonLength);
  auto by = objectField(*obj, "requested_by", base, errors, true);
  if (const json::value* s = field(*obj, "strategy"); s != nullptr && !s->is_null()) {
    std::optional<CancelStrategy> strategy;
    if (s->is_string()) strategy = parseCancelStrategy(s->as_string());
    if (strategy) {
      req.strategy = *strategy;
    } else {
      errors.add(at(base, "strategy"), "Input should be 'soft', 'hard' or 'soft_then_force'", "literal_error");
    }
  }
  bool bad = false;
  auto force = intField(*obj, "force_after_seconds", base, errors, 0, kMaxForceAfterSeconds, bad);
  if (!errors.empty()) return errors.take();
  req.reason = std::move(*reason);
  req.requested_by = std::move(*by);
  if (force) req.force_after_seconds = *force;
  return req;
}

Validated<LegacyCancelRequest> parseLegacyCancelRequest(std::string_view body) {
  Errors errors;
  auto obj = parseObject(body, errors);
  if (!obj) return errors.take();
  const json::array base{"body"};
  auto id = idField(*obj, "queue_item_id", base, errors, true);
  auto reason = stringField(*obj, "reason", base, errors, true, kMaxReasonLength);
  auto by = objectField(*obj, "requested_by", base, errors, true);
  if (!errors.empty()) return errors.take();
  return LegacyCancelRequest{std::move(*id), std::move(*reason), std::move(*by)};
}

Validated<SubmitRequest> parseSubmitRequest(std::string_view body,
                                            const std::function<bool(std::string_view)>& phone_known,
                                            const CommandCheck& command_allowed, const EnvCheck& env_allowed) {
  Errors errors;
  auto obj = parseObject(body, errors);
  if (!obj) return errors.take();
  const json::array base{"body"};
  SubmitRequest req;
  req.process_id = idField(*obj, "process_id", base, errors, false);
  auto phone = idField(*obj, "phone_id", base, errors, true);
  if (phone && !phone_known(*phone)) {
    errors.add(at(base, "phone_id"), "Value error, phone '" + *phone + "' is not configured on this agent",
               "value_error");
  }
  auto account = idField(*obj, "account_id", base, errors, true);
  req.capability_request_id = idField(*obj, "capability_request_id", base, errors, false);
  auto by = objectField(*obj, "requested_by", base, errors, false);
  const json::value* items = field(*obj, "queue_items");
  auto items_loc = at(base, "queue_items");
  if (items == nullptr) {
    errors.add(items_loc, "Field required", "missing");
  } else if (!items->is_array()) {
    errors.add(items_loc, "Input should be a valid list", "list_type");
  } else if (items->as_array().empty() || items->as_array().size() > kMaxQueueItems) {
    const auto n = std::to_string(items->as_array().size());
    if (items->as_array().empty()) {
      errors.add(items_loc, "List should have at least 1 item after validation, not 0", "too_short");
    } else {
      errors.add(items_loc, "List should have at most 100 items after validation, not " + n, "too_long");
    }
  } else {
    const auto& arr = items->as_array();
    for (std::size_t i = 0; i < arr.size(); ++i) {
      auto item = parseItem(arr[i], at(items_loc, static_cast<std::int64_t>(i)), errors, command_allowed, env_allowed);
      if (item) req.items.push_back(std::move(*item));
    }
    for (std::size_t i = 0; i < req.items.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (req.items[i].queue_item_id && req.items[i].queue_item_id == req.items[j].queue_item_id) {
          errors.add(at(at(items_loc, static_cast<std::int64_t>(i)), "queue_item_id"),
                     "Value error, duplicate queue_item_id in this request", "value_error");
        }
      }
    }
  }
  if (!errors.empty()) return errors.take();
  req.phone_id = std::move(*phone);
  req.account_id = std::move(*account);
  if (by) req.requested_by = std::move(*by);
  return req;
}

std::string encodeCursor(std::int64_t seq) { return "c" + std::to_string(seq); }

std::optional<std::int64_t> decodeCursor(std::string_view cursor) {
  if (cursor.size() < 2 || cursor.size() > 20 || cursor[0] != 'c') return std::nullopt;
  std::int64_t seq = 0;
  auto [ptr, ec] = std::from_chars(cursor.data() + 1, cursor.data() + cursor.size(), seq);
  if (ec != std::errc() || ptr != cursor.data() + cursor.size() || seq <= 0) return std::nullopt;
  return seq;
}

bool isValidStopSignal(std::string_view name) {
  static constexpr std::string_view kCatchable[] = {"SIGTERM", "SIGINT",  "SIGHUP",   "SIGQUIT", "SIGUSR1",
                                                    "SIGUSR2", "SIGALRM", "SIGWINCH", "SIGPWR",  "none"};
  for (auto s : kCatchable) {
    if (s == name) return true;
  }
  return false;
}

}  // namespace phonefarm::api
