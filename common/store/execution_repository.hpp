// ExecutionRepository: the executor's SQL — which process a phone serves
// next, execution rows (one per run of a queue item: its container, leader
// and outcome) and stored escalation deadlines. Like ProcessRepository, every
// function runs inside a Store job and throws on failure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "common/store/sqlite_db.hpp"

namespace phonefarm::store {

struct ExecutionRow {
  std::string execution_id;
  std::string queue_item_id;
  std::string process_id;  // joined from queue_items on reads
  std::string runtime;     // "cgroup" | "process-group"
  std::optional<std::string> cgroup;
  std::optional<std::int64_t> leader_pid;
  std::optional<std::int64_t> leader_start_time;  // /proc/<pid>/stat starttime, to verify after a restart
  std::optional<std::string> boot_id;
  WallMs started_at = 0;
  std::optional<WallMs> ended_at;
  std::optional<std::string> outcome;
};

struct EscalationRow {
  std::string queue_item_id;
  std::string process_id;
  WallMs force_at = 0;                // what the API shows
  std::int64_t force_at_boot_ns = 0;  // CLOCK_BOOTTIME deadline, valid on `boot_id` only
  std::string boot_id;
  WallMs created_at = 0;
  std::optional<WallMs> fired_at;
};

class ExecutionRepository {
 public:
  explicit ExecutionRepository(Db& db) : db_(db) {}

  // The oldest unfinished process on the phone (FIFO by submission): the
  // phone serves it until it ends, so its items run back to back.
  std::optional<std::string> headProcessOfPhone(std::string_view phone_id);

  void insertExecution(const ExecutionRow& row);
  // The leader is known only once spawned, after the row was committed.
  void setExecutionLeader(std::string_view execution_id, std::int64_t pid, std::optional<std::int64_t> start_time);
  void finishExecution(std::string_view execution_id, WallMs ended_at, std::string_view outcome);
  // Executions without an end: what a restarted agent must re-adopt.
  std::vector<ExecutionRow> openExecutions();
  // The item's most recent run (GET .../logs reads its files), if it ran.
  std::optional<ExecutionRow> latestExecutionOf(std::string_view queue_item_id);

  // Inserts or replaces the item's deadline (a later cancel may move it earlier).
  void upsertEscalation(const EscalationRow& row);
  void markEscalationFired(std::string_view queue_item_id, WallMs at);
  // Appends termination.issued for a kill no cancel asked for (`cause`:
  // "timeout", the item's timeout_seconds ran out).
  void recordKill(std::string_view queue_item_id, std::string_view cause, WallMs at);
  void deleteEscalation(std::string_view queue_item_id);
  std::vector<EscalationRow> pendingEscalations();

 private:
  Db& db_;
};

}  // namespace phonefarm::store
