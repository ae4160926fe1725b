// Validation of request bodies and query strings into typed requests, with
// every problem reported as a FastAPI/Pydantic-style error entry
// ({"loc": [...], "msg": ..., "type": ...}). Unknown fields are ignored.
// Pure functions over text: the fuzz target drives them directly.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/model/process.hpp"

namespace phonefarm::api {

struct FieldError {
  boost::json::array loc;  // e.g. ["body", "queue_items", 0, "command"]
  std::string msg;
  std::string type;
};
using FieldErrors = std::vector<FieldError>;

template <class T>
using Validated = std::variant<T, FieldErrors>;

inline constexpr std::int64_t kMaxForceAfterSeconds = 2147483647;
inline constexpr std::size_t kMaxReasonLength = 1000;
inline constexpr std::size_t kMaxQueueItems = 100;
inline constexpr std::int64_t kMaxTimeoutSeconds = 604800;

struct CancelRequest {
  std::string reason;
  boost::json::object requested_by;
  CancelStrategy strategy = CancelStrategy::kSoftThenForce;
  std::int64_t force_after_seconds = 10;
};

struct LegacyCancelRequest {
  std::string queue_item_id;
  std::string reason;
  boost::json::object requested_by;
};

struct ItemSpec {
  std::optional<std::string> queue_item_id;
  std::vector<std::string> command;
  EnvList env;
  std::optional<std::int64_t> timeout_seconds;
  std::string stop_signal = "SIGTERM";
};

struct SubmitRequest {
  std::optional<std::string> process_id;
  std::string phone_id;
  std::string account_id;
  std::optional<std::string> capability_request_id;
  boost::json::object requested_by;
  std::vector<ItemSpec> items;
};

struct ListQuery {
  std::optional<ProcessStatus> status;
  std::optional<std::string> phone_id;
  std::size_t limit = 100;
  std::optional<std::int64_t> cursor;  // list rows strictly older than this sequence number
};

inline constexpr std::size_t kMaxListLimit = 500;

// The paging of a newest-first list (GET /phones/{id}/resets): GET
// /processes's `limit` and `cursor`, with its ranges and errors.
struct PageQuery {
  std::size_t limit = 100;
  std::optional<std::int64_t> cursor;  // list rows strictly older than this sequence number
};

Validated<CancelRequest> parseCancelRequest(std::string_view body);
Validated<LegacyCancelRequest> parseLegacyCancelRequest(std::string_view body);
// Judges an item's program (command[0], an absolute path): nullopt when it may
// run, else the reason (agent/exec/command_policy.hpp's checkCommandAllowed).
using CommandCheck = std::function<std::optional<std::string>(const std::string& program)>;
// Why an env name may not be set (agent/exec/env_policy.hpp), nullopt when it may.
using EnvCheck = std::function<std::optional<std::string>(std::string_view name)>;

// `phone_known` says whether a phone_id is configured on this rack.
// `command_allowed`, when set, is asked about each item whose command passed
// the structural checks; each refusal is its own value_error entry at
// ["body", "queue_items", i, "command", 0], reported with every other problem.
Validated<SubmitRequest> parseSubmitRequest(std::string_view body,
                                            const std::function<bool(std::string_view)>& phone_known,
                                            const CommandCheck& command_allowed = nullptr,
                                            const EnvCheck& env_allowed = nullptr);
Validated<ListQuery> parseListQuery(std::string_view query);
// `limit` and `cursor` only; other parameters are ignored.
Validated<PageQuery> parsePageQuery(std::string_view query);

// RFC 3986 percent-decoding; with `plus_is_space` also the form encoding's
// '+' for a space (query strings, not paths). nullopt on a broken escape.
std::optional<std::string> percentDecode(std::string_view in, bool plus_is_space);

// Query strings (GET /processes, GET .../logs): calls `fn` with each
// percent-decoded key and value, in order; a value with a malformed escape is
// a value_error at ["query", key] instead. Empty pairs are skipped.
void forEachQueryParameter(std::string_view query, FieldErrors& errors,
                           const std::function<void(const std::string& key, const std::string& value)>& fn);
// A ["query", key] entry of a 422.
void addQueryError(FieldErrors& errors, std::string_view key, std::string msg, std::string type);
// An integer query value in [min, max], else nullopt with the 422 entry
// FastAPI would give (int_parsing, greater_than_equal, less_than_equal).
std::optional<std::int64_t> parseQueryInteger(std::string_view key, std::string_view value, std::int64_t min,
                                              std::int64_t max, FieldErrors& errors);

// Cursor tokens are opaque to clients; they encode a row sequence number.
std::string encodeCursor(std::int64_t seq);
std::optional<std::int64_t> decodeCursor(std::string_view cursor);

// A catchable signal name ("SIGTERM", "SIGUSR1", ...) or "none"; nullopt if invalid.
bool isValidStopSignal(std::string_view name);

}  // namespace phonefarm::api
