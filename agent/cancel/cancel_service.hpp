// CancelService: runs a cancel request against the store — loads the process,
// plans the transition (cancel_plan.hpp), writes the new state and the audit
// entry in one group-committed transaction — and, once it is durable, has the
// WorkTerminator act on executing work. The completion gets the response data.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agent/cancel/cancel_plan.hpp"
#include "agent/cancel/fault_injection.hpp"
#include "agent/cancel/work_terminator.hpp"
#include "common/clock.hpp"
#include "common/result.hpp"
#include "common/store/store.hpp"

namespace phonefarm::cancel {

struct CancelOutcome {
  CancelPlan plan;  // plan.after is the process as stored
  TerminationResult termination;
};

class CancelService {
 public:
  using Post = std::function<void(std::function<void()>)>;

  // `post` runs a function on the thread the terminator lives on (the event
  // loop); `boot_id` tags stored escalation deadlines (escalation_deadline.hpp).
  // `fault` is a test hook (fault_injection.hpp): kCrashAfterCancelCommit
  // ends the process after a hard kill's commit, before the kill.
  CancelService(store::Store& store, const Clock& clock, WorkTerminator& terminator, Post post, std::string boot_id,
                Fault fault = Fault::kNone)
      : store_(store),
        clock_(clock),
        terminator_(terminator),
        post_(std::move(post)),
        boot_id_(std::move(boot_id)),
        fault_(fault) {}

  using Done = std::function<void(Result<CancelOutcome>)>;

  // POST /processes/{id}/cancel. kNotFound when the process does not exist.
  // A soft_then_force deadline is stored with the cancel, in its transaction.
  // `done` runs through `post`, after the terminator has acted.
  void cancelProcess(std::string process_id, CancelInput input, Done done);
  // POST /cancel (legacy). kNotFound when the queue item does not exist.
  void cancelQueueItem(std::string queue_item_id, CancelInput input, Done done);

 private:
  void finish(Result<CancelPlan> planned, const Done& done);
  void act(Result<CancelPlan> planned, const Done& done);
  store::Store& store_;
  const Clock& clock_;
  WorkTerminator& terminator_;
  Post post_;
  std::string boot_id_;
  Fault fault_;
};

}  // namespace phonefarm::cancel
