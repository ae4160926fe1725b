// WorkTerminator: the seam between the cancel state machine and the executor.
// After a cancel's transaction has committed, the CancelService hands the
// plan's TerminationAction to the terminator, which delivers the stop notice,
// arms or re-arms the escalation, or kills the item's container, and reports
// what it did for the response's `termination` object.
#pragma once

#include <boost/json/object.hpp>
#include <optional>
#include <string>

#include "agent/cancel/cancel_plan.hpp"

namespace phonefarm::cancel {

struct TerminationResult {
  TerminationStatus status = TerminationStatus::kNotNeeded;
  bool terminate_issued = false;
  std::optional<boost::json::object> container;    // {"id","runtime","cgroup","leader_pid"}
  std::optional<boost::json::object> phone_reset;  // {"reset_id","status"}
  std::optional<std::string> error;                // why the kill could not be issued
};

class WorkTerminator {
 public:
  virtual ~WorkTerminator() = default;
  // Called once per accepted cancel whose plan has an executing item, after
  // the commit. Must not block.
  virtual TerminationResult apply(const CancelPlan& plan) = 0;
  // Called after every committed cancel that changed the process (e.g. a
  // queued process was cancelled and its phone may start the next one).
  virtual void processChanged(const Process& /*process*/) {}
};

// Used until an executor is attached: nothing can be executing, so any action
// on executing work reports `failed` with the reason.
class NoExecutorTerminator final : public WorkTerminator {
 public:
  TerminationResult apply(const CancelPlan& plan) override;
};

}  // namespace phonefarm::cancel
