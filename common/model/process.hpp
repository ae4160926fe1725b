// The public work model (docs/api.md "Model"): a process targets one phone with one
// account and holds ordered queue items, each one host command. Plain values;
// the store persists them and common/model/process_json renders them.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.hpp"

namespace phonefarm {

enum class ProcessStatus { kQueued, kRunning, kCancelling, kSucceeded, kFailed, kCancelled };
enum class ItemStatus { kPending, kExecuting, kSucceeded, kFailed, kCancelled, kSkipped };
enum class CancelStrategy { kSoft, kHard, kSoftThenForce };

std::string_view toString(ProcessStatus s);
std::string_view toString(ItemStatus s);
std::string_view toString(CancelStrategy s);
std::optional<ProcessStatus> parseProcessStatus(std::string_view s);
std::optional<ItemStatus> parseItemStatus(std::string_view s);
std::optional<CancelStrategy> parseCancelStrategy(std::string_view s);

bool isTerminal(ProcessStatus s);
bool isTerminal(ItemStatus s);

using EnvList = std::vector<std::pair<std::string, std::string>>;

struct QueueItem {
  std::string queue_item_id;
  int position = 0;
  ItemStatus status = ItemStatus::kPending;
  std::vector<std::string> command;
  EnvList env;
  std::optional<std::int64_t> timeout_seconds;
  std::string stop_signal = "SIGTERM";
  std::optional<WallMs> started_at;
  std::optional<WallMs> ended_at;
  std::optional<std::int64_t> exit_code;
  std::optional<std::string> signal;
  std::optional<std::string> note;
};

// The effective cancel of a process: the first accepted request, with later
// escalations folded in (strategy and force_at). Every request, accepted or
// not, is also kept verbatim in the audit trail.
struct CancelRecord {
  std::string reason;
  CancelStrategy strategy = CancelStrategy::kSoftThenForce;
  WallMs requested_at = 0;
  std::optional<WallMs> force_at;
  boost::json::object requested_by;
};

struct Process {
  std::string process_id;
  ProcessStatus status = ProcessStatus::kQueued;
  std::string phone_id;
  std::string account_id;
  std::string capability_request_id;
  boost::json::object requested_by;
  WallMs created_at = 0;
  WallMs updated_at = 0;
  std::optional<CancelRecord> cancel;
  std::vector<QueueItem> items;

  const QueueItem* executingItem() const;
};

// One entry of a process's cancel audit trail (append-only).
struct CancelAuditEntry {
  std::int64_t id = 0;
  std::string process_id;
  std::optional<std::string> queue_item_id;  // set for the legacy item-level cancel
  std::string endpoint;                      // "process" | "queue_item"
  WallMs requested_at = 0;
  std::string reason;
  CancelStrategy strategy = CancelStrategy::kSoftThenForce;
  std::int64_t force_after_seconds = 10;
  boost::json::object requested_by;
  std::string outcome;             // "cancel_requested" | "ignored_terminal"
  std::string termination_status;  // docs/api.md termination.status
  std::optional<std::string> detail;
};

}  // namespace phonefarm
