// RetentionSweeper: deletes what [retention] says has expired, in the
// background and in small steps, so it never competes with the API for long.
//
// A sweep (every retention.sweep_interval_seconds, the first one that long
// after start) runs these
// phases one after the other, each a series of small store jobs:
//  1. execution directories of executions that ended more than
//     executions_days ago: the ids come from the store, the directories
//     (exec::executionDirectories) are removed on a worker thread with
//     os::removeTree, then the executions are marked as having no files;
//  2. terminal processes last changed more than processes_days ago, with
//     their items, executions, escalations and cancel audit trail (only once
//     their directories are gone);
//  3. ended phone resets older than processes_days (a phone's latest stays);
//  4. incremental_vacuum, a few hundred pages per job, until the file has no
//     free pages left.
// Each store job touches at most `batch` rows; the longest one's duration
// (how long it held the writer) is kept in the stats. Nothing that is not
// terminal is ever selected (store::RetentionRepository).
//
// Threading: everything runs on the event loop; store completions and the
// worker hop back with post.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "agent/phone/blocking_runner.hpp"
#include "common/clock.hpp"
#include "common/config/config.hpp"
#include "common/os/event_loop.hpp"
#include "common/os/tree_removal.hpp"
#include "common/store/retention_repository.hpp"
#include "common/store/store.hpp"

namespace phonefarm {

struct RetentionOptions {
  std::filesystem::path state_dir;
  RetentionConfig config;
  std::size_t batch = 16;               // rows (processes, executions, resets) per store job
  std::int64_t vacuum_pages = 256;      // pages per incremental_vacuum job (1 MiB at 4 KiB pages)
  std::int64_t max_vacuum_jobs = 4096;  // per sweep: the rest waits for the next one
  // Removes one directory tree (on the worker thread); os::removeTree when unset.
  std::function<Result<os::RemovedTree>(const std::filesystem::path&)> remove_tree;
};

struct RetentionStats {
  std::uint64_t sweeps = 0;
  store::RowsDeleted rows;
  std::uint64_t dirs_removed = 0;
  std::uint64_t dir_failures = 0;
  std::uint64_t dir_bytes = 0;     // space the removed execution directories held
  std::uint64_t vacuum_bytes = 0;  // space incremental_vacuum gave back
  double max_job_seconds = 0;      // longest retention store job (writer held)
};

class RetentionSweeper {
 public:
  RetentionSweeper(RetentionOptions options, store::Store& store, const Clock& clock, os::EventLoop& loop,
                   phone::BlockingRunner& worker);
  RetentionSweeper(const RetentionSweeper&) = delete;
  RetentionSweeper& operator=(const RetentionSweeper&) = delete;

  // Sweeps every sweep_interval from now on. On the loop thread.
  void start();
  // No new sweep or phase starts (the one in flight ends at its next step).
  void stop();
  const RetentionStats& stats() const { return stats_; }

 private:
  void sweep();
  void nextExecutions();
  void removeDirectories(std::vector<std::string> ids);
  void nextProcesses();
  void nextResets();
  void nextVacuum(std::int64_t jobs);
  void finish(const char* failed_phase = nullptr, const std::string& error = {});
  void noteJob(std::int64_t ns);
  // Runs `job` on the store and `then` with its result on the loop, timing
  // the job; a failure ends the sweep.
  template <class T>
  void storeStep(const char* phase, std::function<T(store::Db&)> job, std::function<void(T)> then);

  RetentionOptions options_;
  store::Store& store_;
  const Clock& clock_;
  os::EventLoop& loop_;
  phone::BlockingRunner& worker_;
  RetentionStats stats_;
  bool running_ = false;
  bool stopped_ = false;
  os::EventLoop::Id timer_ = 0;
  WallMs executions_before_ = 0;  // this sweep's cut-offs
  WallMs processes_before_ = 0;
  store::RowsDeleted swept_;  // this sweep's totals, for its log line
  std::uint64_t swept_dirs_ = 0;
};

}  // namespace phonefarm
