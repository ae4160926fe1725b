// RetentionRepository: the SQL of retention (agent/daemon/retention_sweeper):
// which execution directories may go, deleting expired terminal processes
// with everything that refers to them, old phone resets, and the store's
// incremental vacuum. Every function runs inside one Store job and touches a
// bounded number of rows, so no job holds the writer for long. Nothing here
// ever selects non-terminal work.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/store/sqlite_db.hpp"

namespace phonefarm::store {

// Rows deleted, by table.
struct RowsDeleted {
  std::int64_t processes = 0;
  std::int64_t queue_items = 0;
  std::int64_t executions = 0;
  std::int64_t cancel_audit = 0;
  std::int64_t escalations = 0;
  std::int64_t phone_resets = 0;
  std::int64_t total() const {
    return processes + queue_items + executions + cancel_audit + escalations + phone_resets;
  }
  RowsDeleted& operator+=(const RowsDeleted& o);
};

struct VacuumStep {
  std::int64_t pages_freed = 0;  // pages given back to the file system
  std::int64_t page_size = 0;
  std::int64_t pages_left = 0;  // free pages still in the file
};

class RetentionRepository {
 public:
  explicit RetentionRepository(Db& db) : db_(db) {}

  // Executions that ended before `ended_before` and whose directories are
  // still on disk, oldest first.
  std::vector<std::string> executionsWithFiles(WallMs ended_before, std::size_t limit);
  void markFilesRemoved(const std::vector<std::string>& execution_ids, WallMs at);

  // Deletes up to `limit` terminal processes last changed before
  // `updated_before` — none with an item pending or executing, an execution
  // not ended, or execution directories still on disk — with their items,
  // executions, escalations and cancel audit trail.
  RowsDeleted deleteExpiredProcesses(WallMs updated_before, std::size_t limit);
  // Deletes up to `limit` ended phone resets requested before `before`,
  // never a phone's latest (GET /phones shows it as last_reset).
  RowsDeleted deleteOldResets(WallMs before, std::size_t limit);

  // Gives up to `max_pages` free pages back to the file system
  // (auto_vacuum = INCREMENTAL; a no-op otherwise).
  VacuumStep incrementalVacuum(std::int64_t max_pages);

 private:
  std::int64_t pragmaInt(const char* sql);
  Db& db_;
};

}  // namespace phonefarm::store
