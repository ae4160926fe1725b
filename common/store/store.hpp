// Store: the agent's one SQLite writer. Every read and write is a job that
// runs on the store thread; jobs that arrive while a commit is in progress are
// group-committed together: BEGIN IMMEDIATE, each job in its own SAVEPOINT,
// one COMMIT (one fsync) for the batch, then every job's completion is called
// — so a completion with a value means the change is durable. A job that
// throws is rolled back alone; a disk-full / locked / I/O failure rolls back
// the whole batch and every job in it gets ErrorKind::kUnavailable.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/metrics/metrics.hpp"
#include "common/result.hpp"
#include "common/store/sqlite_db.hpp"
#include "common/store/wal_checkpointer.hpp"

namespace phonefarm::store {

// Thrown by a job to roll back its own changes and complete with `error`
// (e.g. kNotFound, kConflict). Anything else a job throws is kInternal,
// except an unavailable SqliteError, which fails the whole batch.
struct JobAbort {
  Error error;
};

struct StoreOptions {
  std::filesystem::path path;
  std::chrono::milliseconds busy_timeout{5000};
  std::size_t max_batch = 256;
  // Test hook: PRAGMA max_page_count, to make the database "full".
  std::optional<std::int64_t> max_page_count;
  // Where to record batch sizes and COMMIT (fsync) latency; none when null.
  // Must outlive the store.
  metrics::Registry* metrics = nullptr;
  // Called on the store thread when a batch fails with SQLITE_FULL: true
  // means it made room (the disk guard released its reserve), and the batch
  // runs once more. None = the batch fails at once.
  std::function<bool()> on_disk_full;
  // Called on the store thread after each batch that committed, before its
  // completions run: the EventFeed's cue to read the new events. Must be cheap.
  std::function<void()> on_commit;
};

struct StoreStats {
  std::uint64_t jobs = 0;     // jobs completed (ok or error)
  std::uint64_t commits = 0;  // COMMITs issued (one per batch)
  std::uint64_t max_batch = 0;
  std::uint64_t checkpoints = 0;  // WAL checkpoints (background and inline)
};

class Store {
 public:
  // Opens the database, applies the pragmas and runs pending migrations
  // (common/store/migrations.hpp), then starts the store thread.
  // Throws SqliteError / std::runtime_error at start-up.
  explicit Store(StoreOptions options);
  ~Store();  // stop()
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Queues `work`; `done` runs on the store thread after the batch's COMMIT
  // (with the value) or rollback (with the error). After stop(), `done` is
  // called at once with kUnavailable.
  template <class T>
  void submit(std::function<T(Db&)> work, std::function<void(Result<T>)> done) {
    auto value = std::make_shared<std::optional<T>>();
    enqueue(Job{[work = std::move(work), value](Db& db) { value->emplace(work(db)); },
                [done, value](std::optional<Error> err) {
                  if (err) {
                    done(Result<T>(std::move(*err)));
                  } else {
                    done(Result<T>(std::move(**value)));
                  }
                }});
  }

  // Runs every queued job, then stops the thread and closes the database.
  void stop();

  int schemaVersion() const { return schema_version_; }
  StoreStats stats() const;

 private:
  struct Job {
    std::function<void(Db&)> run;
    std::function<void(std::optional<Error>)> complete;
  };
  void enqueue(Job job);
  void threadMain();
  void runBatch(std::deque<Job>& batch);
  std::optional<Error> tryBatch(std::deque<Job>& batch, std::vector<std::optional<Error>>& results, bool& full);
  std::optional<Error> runJob(Job& job);
  void rollbackBatch();

  StoreOptions options_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<WalCheckpointer> checkpointer_;
  int schema_version_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  StoreStats stats_;
  metrics::Histogram* batch_jobs_ = nullptr;      // from options_.metrics
  metrics::Histogram* commit_seconds_ = nullptr;  // BEGIN..COMMIT of a batch
  std::once_flag joined_;                         // stop() may be called from several threads
  std::thread thread_;
};

}  // namespace phonefarm::store
