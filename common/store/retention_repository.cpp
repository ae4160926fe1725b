// The SQL of retention; see retention_repository.hpp.
#include "common/store/retention_repository.hpp"

namespace phonefarm::store {

RowsDeleted& RowsDeleted::operator+=(const RowsDeleted& o) {
  processes += o.processes;
  queue_items += o.queue_items;
  executions += o.executions;
  cancel_audit += o.cancel_audit;
  escalations += o.escalations;
  phone_resets += o.phone_resets;
  return *this;
}

std::vector<std::string> RetentionRepository::executionsWithFiles(WallMs ended_before, std::size_t limit) {
  Statement& st = db_.prepare(
      "SELECT execution_id FROM executions WHERE files_removed_at IS NULL AND ended_at < ?1 "
      "ORDER BY ended_at LIMIT ?2");
  st.bind(1, ended_before).bind(2, static_cast<std::int64_t>(limit));
  std::vector<std::string> ids;
  while (st.step()) ids.push_back(st.getText(0));
  return ids;
}

void RetentionRepository::markFilesRemoved(const std::vector<std::string>& execution_ids, WallMs at) {
  for (const auto& id : execution_ids) {
    db_.prepare("UPDATE executions SET files_removed_at = ?2 WHERE execution_id = ?1").bind(1, id).bind(2, at).run();
  }
}

RowsDeleted RetentionRepository::deleteExpiredProcesses(WallMs updated_before, std::size_t limit) {
  // Terminal by the process's status, and checked on its items and
  // executions too: nothing that may still run is ever selected. Walked
  // oldest first along processes_by_updated, so a job reads about `limit`
  // rows however many terminal ones the table holds (by status, the planner
  // would sort every terminal process in each job).
  Statement& select = db_.prepare(
      "SELECT p.process_id FROM processes p INDEXED BY processes_by_updated "
      "WHERE p.updated_at < ?1 AND p.status IN ('succeeded', 'failed', 'cancelled') "
      "AND NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.process_id = p.process_id "
      "                AND q.status IN ('pending', 'executing')) "
      "AND NOT EXISTS (SELECT 1 FROM queue_items q JOIN executions e ON e.queue_item_id = q.queue_item_id "
      "                WHERE q.process_id = p.process_id AND (e.ended_at IS NULL OR e.files_removed_at IS NULL)) "
      "ORDER BY p.updated_at LIMIT ?2");
  select.bind(1, updated_before).bind(2, static_cast<std::int64_t>(limit));
  std::vector<std::string> ids;
  while (select.step()) ids.push_back(select.getText(0));
  select.reset();

  RowsDeleted deleted;
  auto run = [this](const char* sql, const std::string& id) {
    db_.prepare(sql).bind(1, id).run();
    return db_.changes();
  };
  for (const auto& id : ids) {
    deleted.escalations += run(
        "DELETE FROM escalations WHERE queue_item_id IN (SELECT queue_item_id FROM queue_items WHERE process_id = ?1)",
        id);
    deleted.cancel_audit += run("DELETE FROM cancel_audit WHERE process_id = ?1", id);
    deleted.executions += run(
        "DELETE FROM executions WHERE queue_item_id IN (SELECT queue_item_id FROM queue_items WHERE process_id = ?1)",
        id);
    deleted.queue_items += run("DELETE FROM queue_items WHERE process_id = ?1", id);
    deleted.processes += run("DELETE FROM processes WHERE process_id = ?1", id);
  }
  return deleted;
}

RowsDeleted RetentionRepository::deleteOldResets(WallMs before, std::size_t limit) {
  db_.prepare(
         "DELETE FROM phone_resets WHERE reset_id IN ("
         " SELECT r.reset_id FROM phone_resets r WHERE r.ended_at IS NOT NULL AND r.requested_at < ?1"
         " AND r.reset_id <> (SELECT r2.reset_id FROM phone_resets r2 WHERE r2.phone_id = r.phone_id"
         "                    ORDER BY r2.seq DESC LIMIT 1)"
         " LIMIT ?2)")
      .bind(1, before)
      .bind(2, static_cast<std::int64_t>(limit))
      .run();
  RowsDeleted deleted;
  deleted.phone_resets = db_.changes();
  return deleted;
}

std::int64_t RetentionRepository::pragmaInt(const char* sql) {
  Statement& st = db_.prepare(sql);
  const std::int64_t v = st.step() ? st.getInt(0) : 0;
  st.reset();
  return v;
}

VacuumStep RetentionRepository::incrementalVacuum(std::int64_t max_pages) {
  VacuumStep step;
  step.page_size = pragmaInt("PRAGMA page_size");
  const std::int64_t before = pragmaInt("PRAGMA freelist_count");
  if (before > 0) db_.exec("PRAGMA incremental_vacuum(" + std::to_string(max_pages) + ")");
  step.pages_left = pragmaInt("PRAGMA freelist_count");
  step.pages_freed = before - step.pages_left;
  return step;
}

}  // namespace phonefarm::store
