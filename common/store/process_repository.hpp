// ProcessRepository: the SQL for processes, their queue items and the cancel
// audit trail. Every function runs inside a Store job (on the store thread,
// inside that job's savepoint) and throws on failure; none commits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/model/process.hpp"
#include "common/store/sqlite_db.hpp"

namespace phonefarm::store {

struct ProcessFilter {
  std::optional<ProcessStatus> status;
  std::optional<std::string> phone_id;
  std::optional<std::int64_t> before_seq;  // paging: only rows with seq < before_seq
  std::size_t limit = 100;
};

struct ProcessPage {
  std::vector<Process> processes;
  std::optional<std::int64_t> next_before_seq;  // set when more rows may follow
};

class ProcessRepository {
 public:
  explicit ProcessRepository(Db& db) : db_(db) {}

  bool processExists(std::string_view process_id);
  // Returns the queue item ids among `ids` that already exist.
  std::vector<std::string> existingQueueItems(const std::vector<std::string>& ids);
  void insertProcess(const Process& process);
  std::optional<Process> loadProcess(std::string_view process_id);
  ProcessPage listProcesses(const ProcessFilter& filter);
  std::optional<std::string> processIdOfItem(std::string_view queue_item_id);

  // Writes the mutable columns of the process row (status, updated_at, cancel_*).
  void updateProcessState(const Process& process);
  // Writes the mutable columns of one item (status, times, exit, signal, note).
  void updateItemState(const QueueItem& item);
  void appendAudit(const CancelAuditEntry& entry);
  std::vector<CancelAuditEntry> loadAudit(std::string_view process_id);

 private:
  std::vector<QueueItem> loadItems(std::string_view process_id);
  Process readProcessRow(Statement& st);
  Db& db_;
};

}  // namespace phonefarm::store
