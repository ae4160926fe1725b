// State directory creation and single-instance lock.
#include "agent/daemon/state_dir_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace phonefarm {

StateDirLock::StateDirLock(const std::filesystem::path& state_dir) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) throw std::runtime_error("cannot create state_dir " + state_dir.string() + ": " + ec.message());
  const auto lock_path = state_dir / "agent.lock";
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd_ < 0) throw std::runtime_error("cannot open " + lock_path.string() + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      throw std::runtime_error("another phonefarm-agent is running with state_dir " + state_dir.string());
    }
    throw std::runtime_error("cannot lock " + lock_path.string() + ": " + std::strerror(err));
  }
}

StateDirLock::~StateDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace phonefarm
