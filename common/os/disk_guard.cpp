// DiskGuard (disk_guard.hpp): statvfs of state_dir and the ballast file.
#include "common/os/disk_guard.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>

#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::os {
namespace {

std::string mib(std::uint64_t bytes) { return std::to_string(bytes / (1024 * 1024)) + " MiB"; }

}  // namespace

DiskGuard::DiskGuard(DiskGuardOptions options) : options_(std::move(options)) {
  std::lock_guard lock(mutex_);
  // A ballast left by the previous run counts as held when it is whole.
  struct stat st {};
  const auto path = options_.dir / kBallastName;
  if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    const auto allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
    if (options_.reserve_bytes > 0 && allocated >= options_.reserve_bytes) {
      reserve_held_ = allocated;
    } else {
      ::unlink(path.c_str());  // partial, or no reserve wanted any more
    }
  }
}

DiskState DiskGuard::measureLocked() {
  DiskState s;
  struct statvfs vfs {};
  if (::statvfs(options_.dir.c_str(), &vfs) != 0) {
    s.error = sysError("statvfs " + options_.dir.string()).message;
  } else {
    s.free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    s.total_bytes = static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  }
  s.reserve_held = reserve_held_;
  s.reserve_released = reserve_released_;
  s.reserve_releases = releases_;
  s.refused_submissions = refused_;
  // A released reserve is owed to the file system: its size does not count as free.
  const std::uint64_t owed = reserve_released_ ? options_.reserve_bytes : 0;
  s.low = !s.error && (s.free_bytes < owed || s.free_bytes - owed < options_.min_free_bytes);
  return s;
}

bool DiskGuard::releaseLocked(const char* why) {
  if (reserve_held_ == 0) return false;
  const auto path = options_.dir / kBallastName;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    spdlog::error("disk.reserve_release_failed path={} error=\"{}\"", path.string(), errnoText());
    return false;
  }
  spdlog::warn("disk.reserve_released bytes={} why={}", reserve_held_, why);
  reserve_held_ = 0;
  reserve_released_ = true;
  ++releases_;
  return true;
}

void DiskGuard::allocateLocked(std::uint64_t free_bytes) {
  if (options_.reserve_bytes == 0 || reserve_held_ > 0) return;
  if (free_bytes < options_.min_free_bytes + options_.reserve_bytes) return;
  const auto path = options_.dir / kBallastName;
  FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) {
    spdlog::error("disk.reserve_failed path={} error=\"{}\"", path.string(), errnoText());
    return;
  }
  // Real blocks, not a sparse file: posix_fallocate.
  const int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(options_.reserve_bytes));
  if (rc != 0) {
    fd.reset();
    ::unlink(path.c_str());
    spdlog::error("disk.reserve_failed path={} error=\"{}\"", path.string(), errnoText(rc));
    return;
  }
  fd.reset();
  reserve_held_ = options_.reserve_bytes;
  if (reserve_released_) spdlog::info("disk.reserve_restored bytes={}", reserve_held_);
  reserve_released_ = false;
}

DiskState DiskGuard::check() {
  std::lock_guard lock(mutex_);
  DiskState s = measureLocked();
  if (s.error) return s;
  allocateLocked(s.free_bytes);
  return measureLocked();
}

bool DiskGuard::releaseReserve() {
  std::lock_guard lock(mutex_);
  return releaseLocked("store_full");
}

std::optional<std::string> DiskGuard::lowReason() {
  std::lock_guard lock(mutex_);
  return lowReasonLocked();
}

std::optional<std::string> DiskGuard::refusal() {
  std::lock_guard lock(mutex_);
  auto why = lowReasonLocked();
  if (why) ++refused_;
  return why;
}

std::optional<std::string> DiskGuard::lowReasonLocked() {
  const DiskState s = measureLocked();
  if (!s.low) return std::nullopt;
  std::string why = "Disk space low: " + mib(s.free_bytes) + " free on the file system of state_dir (" +
                    options_.dir.string() + "), below storage.min_free_bytes (" + mib(options_.min_free_bytes) + ")";
  if (s.reserve_released)
    why += "; the store's reserve is in use until " + mib(options_.reserve_bytes) + " more are free";
  return why + ". New work is refused; cancels, resets and reads still work";
}

DiskState DiskGuard::state() {
  std::lock_guard lock(mutex_);
  return measureLocked();
}

}  // namespace phonefarm::os
