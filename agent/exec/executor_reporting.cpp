// What the executor reports about itself: the executions running now (for
// the API, the shutdown, the orphan reaper and the debug dump) and the lookup
// of an execution by queue item.
#include "agent/exec/executor_execution.hpp"

namespace phonefarm::exec {

Executor::Execution* Executor::find(const std::string& item_id) {
  auto it = executions_.find(item_id);
  return it == executions_.end() ? nullptr : it->second.get();
}

std::vector<std::string> Executor::executingProcessIds() const {
  std::vector<std::string> ids;
  for (const auto& [item_id, e] : executions_) ids.push_back(e->process_id);
  return ids;
}

std::size_t Executor::pendingEscalations() const {
  std::size_t n = 0;
  for (const auto& [item_id, e] : executions_) n += e->escalation_timer != 0 ? 1 : 0;
  return n;
}

std::optional<std::pair<std::string, std::string>> Executor::currentOf(const std::string& phone_id) const {
  for (const auto& [item_id, e] : executions_) {
    if (e->phone_id == phone_id) return std::make_pair(e->process_id, item_id);
  }
  return std::nullopt;
}

boost::json::object Executor::describe() const {
  boost::json::object o = containment_.describe();
  o["run_as"] = options_.run_as;
  o["executing"] = executions_.size();
  o["can_run_work"] = !unavailable_.has_value();
  if (unavailable_) o["unavailable"] = *unavailable_;
  return o;
}

std::vector<pid_t> Executor::leaderPids() const {
  std::vector<pid_t> pids;
  for (const auto& [item_id, e] : executions_) {
    if (e->container) pids.push_back(e->container->info().leader_pid);
  }
  return pids;
}

}  // namespace phonefarm::exec
