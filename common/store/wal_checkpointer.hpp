// WalCheckpointer: moves WAL checkpoints off the commit path. SQLite's
// automatic checkpoint runs inside the COMMIT that crosses 1000 WAL pages:
// that commit also copies the pages into the database file and fsyncs it, and
// every request of its batch waits (it was the p99 of the cancel benchmark).
// Instead, a commit hook asks this thread, which has its own connection, to
// run a PASSIVE checkpoint alongside the writer. If the WAL still grows past a
// hard bound (the checkpointer cannot keep up), the writer checkpoints inline.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "common/store/sqlite_db.hpp"

namespace phonefarm::store {

class WalCheckpointer {
 public:
  static constexpr int kBackgroundPages = 1000;  // SQLite's autocheckpoint default
  static constexpr int kInlinePages = 16000;     // ~64 MiB of 4 KiB pages
  static constexpr std::chrono::milliseconds kMinInterval{25};

  // Opens a second connection to `path` and starts the thread.
  WalCheckpointer(const std::filesystem::path& path, const DbOptions& options);
  ~WalCheckpointer();  // stops and joins; closes its connection
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Replaces the writer's automatic checkpoint with this one (a wal hook).
  void attach(Db& writer);

  std::uint64_t checkpoints() const { return checkpoints_.load(); }

 private:
  static int onCommit(void* self, sqlite3* db, const char* name, int pages);
  void threadMain();

  std::unique_ptr<Db> db_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool requested_ = false;
  bool stopping_ = false;
  std::atomic<std::uint64_t> checkpoints_{0};
  std::thread thread_;
};

}  // namespace phonefarm::store
