// Background WAL checkpoints; see wal_checkpointer.hpp.
#include "common/store/wal_checkpointer.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include "common/os/thread_name.hpp"

namespace phonefarm::store {

WalCheckpointer::WalCheckpointer(const std::filesystem::path& path, const DbOptions& options)
    : db_(Db::open(path, options)) {
  thread_ = std::thread([this] {
    os::setCurrentThreadName("pf-ckpt");
    threadMain();
  });
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WalCheckpointer::attach(Db& writer) { sqlite3_wal_hook(writer.handle(), &WalCheckpointer::onCommit, this); }

// Runs on the writer's thread, inside its COMMIT: only signal, unless the WAL
// is out of bounds.
int WalCheckpointer::onCommit(void* self_ptr, sqlite3* db, const char* name, int pages) {
  auto* self = static_cast<WalCheckpointer*>(self_ptr);
  if (pages >= kInlinePages) {
    const int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    spdlog::warn("store.checkpoint.inline wal_pages={} rc={}", pages, rc);
    ++self->checkpoints_;
  } else if (pages >= kBackgroundPages) {
    {
      std::lock_guard lock(self->mutex_);
      self->requested_ = true;
    }
    self->cv_.notify_one();
  }
  return SQLITE_OK;
}

void WalCheckpointer::threadMain() {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || requested_; });
    if (stopping_) return;
    requested_ = false;
    lock.unlock();
    int log_frames = 0;
    int checkpointed = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(db_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &checkpointed);
    if (rc == SQLITE_OK) {
      ++checkpoints_;
      spdlog::debug("store.checkpoint wal_frames={} checkpointed={}", log_frames, checkpointed);
    } else {
      spdlog::warn("store.checkpoint.failed rc={} error=\"{}\"", rc, sqlite3_errmsg(db_->handle()));
    }
    lock.lock();
    // While commits keep coming the WAL never empties, so every commit asks
    // again; one checkpoint per interval is enough and spares fsyncs.
    cv_.wait_for(lock, kMinInterval, [this] { return stopping_; });
  }
}

}  // namespace phonefarm::store
