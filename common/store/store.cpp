// Store: the store thread and its group commit. Jobs queue up while the
// previous batch is committing (the fsync is the slow part), and the next
// batch takes all of them into one transaction, so N concurrent writers pay
// for far fewer than N fsyncs. Each job runs in its own savepoint so one job's
// failure does not cost the others their writes; only a failure of the
// database itself (full, locked, I/O) loses the whole batch.
#include "common/store/store.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "common/os/thread_name.hpp"
#include "common/store/migrations.hpp"

namespace phonefarm::store {
namespace {

// Not "j": a job may use short savepoint names of its own, and RELEASE
// matches the innermost savepoint of that name.
constexpr std::string_view kSavepoint = "SAVEPOINT store_job";
constexpr std::string_view kRelease = "RELEASE store_job";
constexpr std::string_view kRollbackJob = "ROLLBACK TO store_job; RELEASE store_job";

// A job may leave a cached statement mid-step (a SELECT it stopped reading,
// or a write that threw). Pending statements make RELEASE/ROLLBACK fail with
// SQLITE_BUSY and keep read snapshots open, so reset them at job boundaries.
void resetBusyStatements(sqlite3* db) {
  for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s != nullptr; s = sqlite3_next_stmt(db, s)) {
    if (sqlite3_stmt_busy(s)) sqlite3_reset(s);
  }
}

// The transaction ended inside a job: the job ran COMMIT/ROLLBACK itself, or
// swallowed an error after which SQLite rolled back on its own. Either way
// the batch's earlier writes are gone.
struct TransactionLost : std::runtime_error {
  TransactionLost() : std::runtime_error("transaction ended inside a job") {}
};

}  // namespace

Store::Store(StoreOptions options) : options_(std::move(options)) {
  if (options_.max_batch == 0) options_.max_batch = 1;
  db_ = Db::open(options_.path, DbOptions{options_.busy_timeout});
  if (options_.max_page_count) {
    // Per connection, not persisted: only this writer is limited.
    db_->exec("PRAGMA max_page_count = " + std::to_string(*options_.max_page_count));
  }
  schema_version_ = migrate(*db_);
  checkpointer_ = std::make_unique<WalCheckpointer>(options_.path, DbOptions{options_.busy_timeout});
  checkpointer_->attach(*db_);
  if (options_.metrics != nullptr) {
    batch_jobs_ = &options_.metrics->histogram("phonefarm_store_batch_jobs",
                                               "Jobs committed together in one store transaction (group commit).",
                                               {1, 2, 4, 8, 16, 32, 64, 128, 256});
    commit_seconds_ = &options_.metrics->histogram(
        "phonefarm_store_commit_seconds", "Duration of COMMIT, the fsync of a batch (seconds).",
        {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1});
  }
  thread_ = std::thread([this] {
    os::setCurrentThreadName("pf-store");
    threadMain();
  });
}

Store::~Store() { stop(); }

void Store::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  // From a completion (on the store thread) we cannot join ourselves; the
  // thread exits once the queue is drained and the owner's stop() joins.
  if (std::this_thread::get_id() == thread_.get_id()) return;
  std::call_once(joined_, [this] {
    if (thread_.joinable()) thread_.join();
    sqlite3_wal_hook(db_->handle(), nullptr, nullptr);
    {
      std::lock_guard lock(mutex_);
      if (checkpointer_) stats_.checkpoints = checkpointer_->checkpoints();
      checkpointer_.reset();
    }
    db_.reset();  // the last connection to close checkpoints the WAL
  });
}

StoreStats Store::stats() const {
  std::lock_guard lock(mutex_);
  StoreStats stats = stats_;
  if (checkpointer_) stats.checkpoints = checkpointer_->checkpoints();
  return stats;
}

void Store::enqueue(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  // Outside the lock: the completion may submit again.
  job.complete(makeError(ErrorKind::kUnavailable, "store stopped"));
}

void Store::threadMain() {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything queued before stop() has run
    // Everything that piled up during the last commit goes into this batch.
    const std::size_t n = std::min(queue_.size(), options_.max_batch);
    std::deque<Job> batch;
    for (std::size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    lock.unlock();
    runBatch(batch);
    lock.lock();
  }
}

std::optional<Error> Store::runJob(Job& job) {
  sqlite3* handle = db_->handle();
  db_->prepare(kSavepoint).run();  // cached: no SQL parsing per job
  std::optional<Error> error;
  try {
    job.run(*db_);
  } catch (const JobAbort& abort) {
    error = abort.error;
  } catch (const SqliteError& e) {
    if (e.isUnavailable()) {
      resetBusyStatements(handle);
      throw;  // the database failed, not the job: the whole batch goes
    }
    error = makeError(ErrorKind::kInternal, e.what());
  } catch (const std::exception& e) {
    error = makeError(ErrorKind::kInternal, e.what());
  } catch (...) {
    error = makeError(ErrorKind::kInternal, "job threw a non-standard exception");
  }
  resetBusyStatements(handle);
  if (sqlite3_get_autocommit(handle)) throw TransactionLost();
  if (error) {
    db_->exec(kRollbackJob);
  } else {
    db_->prepare(kRelease).run();
  }
  return error;
}

void Store::rollbackBatch() {
  sqlite3* handle = db_->handle();
  resetBusyStatements(handle);
  // After SQLITE_FULL / IOERR / NOMEM SQLite may already have rolled back;
  // a ROLLBACK then would only fail with "no transaction is active".
  if (sqlite3_get_autocommit(handle)) return;
  try {
    db_->exec("ROLLBACK");
  } catch (const SqliteError& e) {
    spdlog::error("store.rollback.failed error=\"{}\"", e.what());
  }
}

std::optional<Error> Store::tryBatch(std::deque<Job>& batch, std::vector<std::optional<Error>>& results, bool& full) {
  std::optional<Error> batchError;
  full = false;
  try {
    db_->prepare("BEGIN IMMEDIATE").run();
    for (std::size_t i = 0; i < batch.size(); ++i) results[i] = runJob(batch[i]);
    const auto commit_start = std::chrono::steady_clock::now();
    db_->prepare("COMMIT").run();
    if (commit_seconds_ != nullptr) {
      commit_seconds_->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - commit_start).count());
      batch_jobs_->observe(static_cast<double>(batch.size()));
    }
  } catch (const SqliteError& e) {
    // BEGIN/COMMIT/savepoint failures land here too: a SQLITE_BUSY on BEGIN
    // is the writer lock held elsewhere, a SQLITE_FULL on COMMIT is the disk.
    full = e.code() == SQLITE_FULL;
    batchError = e.isUnavailable()
                     ? makeError(ErrorKind::kUnavailable, std::string("database unavailable: ") + e.what())
                     : makeError(ErrorKind::kInternal, e.what());
  } catch (const std::exception& e) {
    batchError = makeError(ErrorKind::kInternal, e.what());
  }
  if (batchError) rollbackBatch();
  return batchError;
}

void Store::runBatch(std::deque<Job>& batch) {
  std::vector<std::optional<Error>> results(batch.size());
  bool full = false;
  std::optional<Error> batchError = tryBatch(batch, results, full);
  if (batchError && full && options_.on_disk_full && options_.on_disk_full()) {
    // Room was made (the disk guard's reserve): the same jobs once more. A
    // job only touches the database, so running it again is safe.
    spdlog::warn("store.batch.retry jobs={} after=disk_full", batch.size());
    results.assign(batch.size(), std::nullopt);
    batchError = tryBatch(batch, results, full);
  }
  // The EventFeed's cue to read what this batch appended, before the
  // completions run.
  if (!batchError && options_.on_commit) options_.on_commit();
  if (batchError) spdlog::warn("store.batch.failed jobs={} error=\"{}\"", batch.size(), batchError->message);

  {
    // Before the completions, so a caller woken by one sees it counted.
    std::lock_guard lock(mutex_);
    stats_.jobs += batch.size();
    if (!batchError) ++stats_.commits;
    stats_.max_batch = std::max<std::uint64_t>(stats_.max_batch, batch.size());
  }

  for (std::size_t i = 0; i < batch.size(); ++i) {
    // A job that succeeded before the batch failed lost its writes with it.
    std::optional<Error> outcome = batchError ? batchError : std::move(results[i]);
    try {
      batch[i].complete(std::move(outcome));
    } catch (const std::exception& e) {
      // One broken completion must not starve the rest of the batch.
      spdlog::error("store.completion.threw error=\"{}\"", e.what());
    } catch (...) {
      spdlog::error("store.completion.threw error=\"non-standard exception\"");
    }
  }
}

}  // namespace phonefarm::store
