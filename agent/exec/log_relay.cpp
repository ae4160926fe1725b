// The exec shim's log relay (see the header). splice(2) with
// SPLICE_F_NONBLOCK never waits on the pipe; the log is a regular file the
// shim opened without O_APPEND (splice refuses appending files), at whose
// end it writes. Where splice is refused, read/write does the same.
#include "agent/exec/log_relay.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "common/os/sys_error.hpp"

namespace phonefarm::exec {
namespace {

// The pipe's capacity. Measured relaying 1 GiB (README, "Disk and
// retention"): 256 KiB beat the default 64 KiB and also 128 KiB and 1 MiB
// (which no longer fits the CPU caches). 100 phones' pipes stay within the
// kernel's default pipe-user-pages-soft (64 MiB) for an unprivileged agent.
constexpr int kPipeBytes = 256 * 1024;
// The most one splice or read asks for.
constexpr std::size_t kChunk = 1 << 20;
// The buffer of the read/write path.
constexpr std::size_t kCopyBuffer = 64 * 1024;

void writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // best effort: the log is what failed
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// splice(2) is not to be had here: a file system without it (EINVAL), or a
// seccomp filter that refuses it (EPERM, ENOSYS). read/write then does the
// same; a real write error shows there.
bool cannotSplice(int err) { return err == EINVAL || err == EPERM || err == ENOSYS; }

}  // namespace

std::string formatLogCap(std::uint64_t bytes) {
  if (bytes != 0 && bytes % (1ULL << 30) == 0) return std::to_string(bytes >> 30) + " GiB";
  if (bytes != 0 && bytes % (1ULL << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes != 0 && bytes % (1ULL << 10) == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
}

std::string truncationMarker(std::string_view stream, std::uint64_t max_bytes) {
  return "\n[phonefarm-agent: " + std::string(stream) + " truncated at " + formatLogCap(max_bytes) +
         " (work.log_max_bytes); the rest is dropped]\n";
}

std::optional<std::string> logTruncationNote(std::uint64_t max_bytes, std::uint64_t stdout_dropped,
                                             std::uint64_t stderr_dropped) {
  std::string note;
  for (const auto& [stream, dropped] : {std::pair{"stdout", stdout_dropped}, std::pair{"stderr", stderr_dropped}}) {
    if (dropped == 0) continue;
    if (!note.empty()) note += "; ";
    note += std::string(stream) + " truncated at " + formatLogCap(max_bytes) + ": " + std::to_string(dropped) +
            (dropped == 1 ? " byte" : " bytes") + " dropped";
  }
  if (note.empty()) return std::nullopt;
  return note;
}

LogStream::LogStream(std::string name, int log_fd, std::uint64_t max_bytes)
    : name_(std::move(name)), log_fd_(log_fd), max_bytes_(max_bytes) {}

Status LogStream::open() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return os::sysError("pipe2 for " + name_);
  read_end_.reset(fds[0]);
  write_end_.reset(fds[1]);
  if (::fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) return os::sysError("fcntl O_NONBLOCK on the " + name_ + " pipe");
  ::fcntl(fds[0], F_SETPIPE_SZ, kPipeBytes);  // best effort: the default 64 KiB works too
  null_.reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (!null_) splice_to_null_ = false;
  // The log is new, but a shim run again on the same control dir appends.
  if (::lseek(log_fd_, 0, SEEK_END) < 0) return os::sysError("seek to the end of " + name_ + ".log");
  return okStatus();
}

// Bytes taken from the pipe and written to the log: > 0 taken, 0 at EOF, -1
// with errno (EAGAIN: empty; anything else: the log could not be written).
long LogStream::toLog(std::size_t n) {
  if (splice_to_log_) {
    const ssize_t moved = ::splice(read_end_.get(), nullptr, log_fd_, nullptr, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (moved >= 0 || !cannotSplice(errno)) {
      if (moved > 0) written_ += static_cast<std::uint64_t>(moved);
      return moved;
    }
    splice_to_log_ = false;
  }
  std::vector<char> buffer(std::min(n, kCopyBuffer));
  const ssize_t got = ::read(read_end_.get(), buffer.data(), buffer.size());
  if (got <= 0) return got;
  std::string_view rest(buffer.data(), static_cast<std::size_t>(got));
  while (!rest.empty()) {
    const ssize_t put = ::write(log_fd_, rest.data(), rest.size());
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      // What was read and not written is dropped; the next call drops the rest.
      log_error_ = std::strerror(put < 0 ? errno : EIO);
      dropped_ += rest.size();
      markTruncated();
      break;
    }
    written_ += static_cast<std::uint64_t>(put);
    rest.remove_prefix(static_cast<std::size_t>(put));
  }
  return got;
}

// Bytes taken from the pipe and dropped: > 0, 0 at EOF, -1 with errno.
long LogStream::toNull(std::size_t n) {
  ssize_t moved = -1;
  if (splice_to_null_) {
    moved = ::splice(read_end_.get(), nullptr, null_.get(), nullptr, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (moved < 0 && cannotSplice(errno)) splice_to_null_ = false;
  }
  if (!splice_to_null_) {
    std::vector<char> buffer(std::min(n, kCopyBuffer));
    moved = ::read(read_end_.get(), buffer.data(), buffer.size());
  }
  if (moved > 0) {
    dropped_ += static_cast<std::uint64_t>(moved);
    markTruncated();
  }
  return moved;
}

void LogStream::markTruncated() {
  if (std::exchange(marked_, true)) return;
  if (log_error_) {
    writeAll(log_fd_,
             "\n[phonefarm-agent: writing " + name_ + ".log failed (" + *log_error_ + "); the rest is dropped]\n");
  } else {
    writeAll(log_fd_, truncationMarker(name_, max_bytes_));
  }
}

LogStream::Pumped LogStream::pump(std::uint64_t budget) {
  std::uint64_t moved = 0;
  while (read_end_ && moved < budget) {
    const bool to_log = written_ < max_bytes_ && !log_error_;
    const std::size_t chunk =
        to_log ? static_cast<std::size_t>(std::min<std::uint64_t>(max_bytes_ - written_, kChunk)) : kChunk;
    const long n = to_log ? toLog(chunk) : toNull(chunk);
    if (n > 0) {
      moved += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n == 0) break;  // every writer is gone and the pipe is drained
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return Pumped::kEmpty;
    if (to_log) {
      // The log cannot take more (a full disk, an I/O error): the job must
      // not block on it, so the rest of the stream is dropped.
      log_error_ = std::strerror(errno);
      continue;
    }
    break;  // the pipe itself failed: nothing more can come from it
  }
  if (read_end_ && moved >= budget) return Pumped::kMoved;
  read_end_.reset();
  return Pumped::kEof;
}

}  // namespace phonefarm::exec
