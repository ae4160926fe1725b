// The cancel state machine (docs/api.md "POST /processes/{id}/cancel", steps 1–5,
// and the legacy item-level cancel), as pure functions: given the stored
// process, the request and the time, compute the process as it must be stored
// afterwards, the audit entry, and what must happen to executing work. The
// CancelService stores the plan in one transaction and hands the termination
// action to the executor after the commit.
#pragma once

#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/model/process.hpp"

namespace phonefarm::cancel {

enum class TerminationStatus { kNotNeeded, kRequested, kScheduled, kIssued, kFailed };
std::string_view toString(TerminationStatus s);

// What the executor must do to the executing item after the commit.
enum class TerminationAction {
  kNone,               // nothing executing, or nothing new to do
  kNotify,             // soft: cancel file + stop signal + SIGCONT
  kNotifyAndSchedule,  // soft_then_force: notify now, kill at force_at
  kReschedule,         // an earlier force_at replaces the armed one
  kKill,               // hard (or force_after_seconds 0): kill the whole tree now
};

struct CancelInput {
  std::string reason;
  boost::json::object requested_by;
  CancelStrategy strategy = CancelStrategy::kSoftThenForce;
  std::int64_t force_after_seconds = 10;
};

inline constexpr std::string_view kOutcomeRequested = "cancel_requested";
inline constexpr std::string_view kOutcomeIgnored = "ignored_terminal";

struct CancelPlan {
  bool ignored_terminal = false;
  bool changed = false;  // whether any stored row changes (besides the audit entry)
  Process after;         // the process as stored after this request
  std::vector<std::string> cancelled_item_ids;
  std::vector<std::string> active_item_ids;
  std::optional<std::string> executing_item_id;
  TerminationAction action = TerminationAction::kNone;
  TerminationStatus termination = TerminationStatus::kNotNeeded;
  std::optional<WallMs> force_at;
  CancelAuditEntry audit;
};

// Process-level cancel (the seed endpoint).
CancelPlan planProcessCancel(const Process& before, const CancelInput& input, WallMs now);
// Legacy POST /cancel on one queue item: that item only; the process goes on.
// Executing items get the notice with a force after 10 s.
CancelPlan planItemCancel(const Process& before, std::string_view queue_item_id, const CancelInput& input, WallMs now);

// The status a process settles in when none of its items is pending or
// executing any more; nullopt while work remains.
std::optional<ProcessStatus> settledStatus(const Process& p);

}  // namespace phonefarm::cancel
