// RetentionSweeper (retention_sweeper.hpp): the sweep's phases as a chain of
// store jobs and worker-thread removals on the event loop.
#include "agent/daemon/retention_sweeper.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "agent/exec/execution_dirs.hpp"
#include "common/os/tree_removal.hpp"

namespace phonefarm {
namespace {

constexpr double kMsPerDay = 86'400'000.0;

template <class T>
struct Timed {
  T value;
  std::int64_t ns = 0;
};

// What the worker reports of one execution's directories.
struct DirOutcome {
  std::string execution_id;
  os::RemovedTree removed;
  std::optional<std::string> error;
};

}  // namespace

RetentionSweeper::RetentionSweeper(RetentionOptions options, store::Store& store, const Clock& clock,
                                   os::EventLoop& loop, phone::BlockingRunner& worker)
    : options_(std::move(options)), store_(store), clock_(clock), loop_(loop), worker_(worker) {
  options_.batch = std::max<std::size_t>(options_.batch, 1);
  if (!options_.remove_tree)
    options_.remove_tree = [](const std::filesystem::path& dir) { return os::removeTree(dir); };
}

void RetentionSweeper::start() {
  // Not at once: start-up (re-adoption, the first requests) has the store first.
  timer_ = loop_.startTimer(std::chrono::duration_cast<std::chrono::milliseconds>(options_.config.sweep_interval),
                            [this] { sweep(); });
}

void RetentionSweeper::stop() {
  stopped_ = true;
  loop_.cancelTimer(std::exchange(timer_, 0));
}

template <class T>
void RetentionSweeper::storeStep(const char* phase, std::function<T(store::Db&)> job, std::function<void(T)> then) {
  const Clock& clock = clock_;
  store_.submit<Timed<T>>(
      [job = std::move(job), &clock](store::Db& db) {
        const std::int64_t started = clock.bootNowNs();
        T value = job(db);
        return Timed<T>{std::move(value), clock.bootNowNs() - started};
      },
      [this, phase, then = std::move(then)](Result<Timed<T>> r) {
        loop_.post([this, phase, then, r = std::move(r)]() mutable {
          if (!r) return finish(phase, r.error().message);
          noteJob(r->ns);
          if (stopped_) return finish();
          then(std::move(r->value));
        });
      });
}

void RetentionSweeper::noteJob(std::int64_t ns) {
  stats_.max_job_seconds = std::max(stats_.max_job_seconds, static_cast<double>(ns) / 1e9);
}

void RetentionSweeper::sweep() {
  timer_ = 0;
  if (running_ || stopped_) return;
  running_ = true;
  swept_ = {};
  swept_dirs_ = 0;
  const WallMs now = clock_.wallNowMs();
  executions_before_ = now - static_cast<WallMs>(options_.config.executions_days * kMsPerDay);
  processes_before_ = now - static_cast<WallMs>(options_.config.processes_days * kMsPerDay);
  nextExecutions();
}

void RetentionSweeper::nextExecutions() {
  const WallMs before = executions_before_;
  const std::size_t limit = options_.batch;
  storeStep<std::vector<std::string>>(
      "executions",
      [before, limit](store::Db& db) { return store::RetentionRepository(db).executionsWithFiles(before, limit); },
      [this](std::vector<std::string> ids) {
        if (ids.empty()) return nextProcesses();
        removeDirectories(std::move(ids));
      });
}

void RetentionSweeper::removeDirectories(std::vector<std::string> ids) {
  // Off the loop: a job may have left a huge tree behind.
  // The worker job touches only the loop (which outlives everything), never
  // `this`: the sweeper may be gone by the time a long removal returns.
  worker_.run(
      [this, &loop = loop_, ids = std::move(ids), state_dir = options_.state_dir, remove = options_.remove_tree] {
        auto outcomes = std::make_shared<std::vector<DirOutcome>>();
        for (const auto& id : ids) {
          DirOutcome outcome{id, {}, {}};
          for (const auto& dir : exec::executionDirectories(state_dir, id)) {
            auto removed = remove(dir);
            if (!removed) {
              if (!outcome.error) outcome.error = removed.error().message;
              continue;
            }
            outcome.removed.entries += removed->entries;
            outcome.removed.bytes += removed->bytes;
          }
          outcomes->push_back(std::move(outcome));
        }
        loop.post([this, ids, outcomes] {
          for (const auto& o : *outcomes) {
            stats_.dir_bytes += o.removed.bytes;
            if (o.error) {
              // Marked as removed all the same: one directory that cannot go
              // must not hold back every later one (nor its process's rows).
              ++stats_.dir_failures;
              spdlog::error("retention.dir_failed execution_id={} error=\"{}\"", o.execution_id, *o.error);
            } else {
              ++stats_.dirs_removed;
              ++swept_dirs_;
            }
          }
          const bool more = ids.size() >= options_.batch;
          const WallMs now = clock_.wallNowMs();
          storeStep<int>(
              "executions",
              [ids, now](store::Db& db) {
                store::RetentionRepository(db).markFilesRemoved(ids, now);
                return 0;
              },
              [this, more](int) { more ? nextExecutions() : nextProcesses(); });
        });
      });
}

void RetentionSweeper::nextProcesses() {
  const WallMs before = processes_before_;
  const std::size_t limit = options_.batch;
  storeStep<store::RowsDeleted>(
      "processes",
      [before, limit](store::Db& db) { return store::RetentionRepository(db).deleteExpiredProcesses(before, limit); },
      [this, limit](store::RowsDeleted rows) {
        stats_.rows += rows;
        swept_ += rows;
        static_cast<std::size_t>(rows.processes) >= limit ? nextProcesses() : nextResets();
      });
}

void RetentionSweeper::nextResets() {
  const WallMs before = processes_before_;
  const std::size_t limit = options_.batch;
  storeStep<store::RowsDeleted>(
      "resets",
      [before, limit](store::Db& db) { return store::RetentionRepository(db).deleteOldResets(before, limit); },
      [this, limit](store::RowsDeleted rows) {
        stats_.rows += rows;
        swept_ += rows;
        static_cast<std::size_t>(rows.phone_resets) >= limit ? nextResets() : nextVacuum(0);
      });
}

void RetentionSweeper::nextVacuum(std::int64_t jobs) {
  const std::int64_t pages = options_.vacuum_pages;
  storeStep<store::VacuumStep>(
      "vacuum", [pages](store::Db& db) { return store::RetentionRepository(db).incrementalVacuum(pages); },
      [this, jobs](store::VacuumStep step) {
        stats_.vacuum_bytes += static_cast<std::uint64_t>(step.pages_freed * step.page_size);
        if (step.pages_left > 0 && step.pages_freed > 0 && jobs + 1 < options_.max_vacuum_jobs) {
          return nextVacuum(jobs + 1);
        }
        finish();
      });
}

void RetentionSweeper::finish(const char* failed_phase, const std::string& error) {
  running_ = false;
  ++stats_.sweeps;
  if (failed_phase != nullptr) {
    spdlog::warn("retention.failed phase={} error=\"{}\"", failed_phase, error);
  } else if (swept_.total() > 0 || swept_dirs_ > 0) {
    spdlog::info(
        "retention.swept processes={} queue_items={} executions={} cancel_audit={} phone_resets={} dirs={} "
        "max_job_us={}",
        swept_.processes, swept_.queue_items, swept_.executions, swept_.cancel_audit, swept_.phone_resets, swept_dirs_,
        static_cast<std::int64_t>(stats_.max_job_seconds * 1e6));
  }
  if (stopped_) return;
  timer_ = loop_.startTimer(std::chrono::duration_cast<std::chrono::milliseconds>(options_.config.sweep_interval),
                            [this] { sweep(); });
}

}  // namespace phonefarm
