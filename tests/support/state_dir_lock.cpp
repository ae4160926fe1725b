#include "tests/support/state_dir_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <system_error>
#include <thread>

namespace phonefarm::testing {

namespace fs = std::filesystem;

bool stateDirLockIsFree(const fs::path& lock) {
  const int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return true;  // no lock file: nobody holds it
  const bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  ::close(fd);
  return free;
}

std::string stateDirLockHolders(const fs::path& lock) {
  std::string holders;
  std::error_code ec;
  for (const auto& proc : fs::directory_iterator("/proc", ec)) {
    for (const auto& fd_link : fs::directory_iterator(proc.path() / "fd", ec)) {
      if (fs::read_symlink(fd_link.path(), ec) != lock) continue;
      holders +=
          " " + proc.path().filename().string() + " (" + fs::read_symlink(proc.path() / "exe", ec).string() + ")";
      break;
    }
  }
  return holders.empty() ? " nobody any more" : holders;
}

bool waitForStateDirLock(const fs::path& lock, std::chrono::milliseconds timeout,
                         const std::function<void()>& on_first_wait) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool waited = false;
  for (;;) {
    if (stateDirLockIsFree(lock)) return true;
    if (!waited && on_first_wait) on_first_wait();
    waited = true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace phonefarm::testing
