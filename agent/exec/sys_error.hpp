// Helpers shared by the executor's system-call code: sysError turns a failed
// call's errno into an Error that keeps the call's context, and
// FileDescriptor closes what it owns.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/result.hpp"

namespace phonefarm::exec {

// "<context>: <strerror>"; the errno picks the kind: missing -> kNotFound,
// exists/busy -> kConflict, permission/read-only -> kUnavailable, else kInternal.
inline Error sysError(std::string_view context, int err = errno) {
  ErrorKind kind = ErrorKind::kInternal;
  if (err == ENOENT || err == ESRCH) kind = ErrorKind::kNotFound;
  if (err == EEXIST || err == EBUSY) kind = ErrorKind::kConflict;
  if (err == EACCES || err == EPERM || err == EROFS) kind = ErrorKind::kUnavailable;
  return makeError(kind, std::string(context) + ": " + std::system_category().message(err));
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // Closes now and returns close()'s result: it reports delayed write errors
  // on some filesystems, so writers check it.
  int release() { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

}  // namespace phonefarm::exec
