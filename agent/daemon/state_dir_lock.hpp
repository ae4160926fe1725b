// StateDirLock: creates the state directory (0750) and holds an exclusive
// flock on `agent.lock` inside it for the daemon's lifetime, so a second agent
// started on the same state (and the same SQLite file) refuses to run.
#pragma once

#include <filesystem>

namespace phonefarm {

class StateDirLock {
 public:
  // Throws std::runtime_error naming the directory when it cannot be created
  // or another agent holds the lock.
  explicit StateDirLock(const std::filesystem::path& state_dir);
  ~StateDirLock();
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace phonefarm
