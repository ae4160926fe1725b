// FileDescriptor: owns one file descriptor and closes it once. Every
// descriptor the agent and the CLI open goes into one of these.
#pragma once

#include <unistd.h>

#include <utility>

namespace phonefarm::os {

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Closes the one held (if any) and takes fd; reset() just closes.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // Closes now and returns close()'s result: it reports delayed write errors
  // on some filesystems, so writers check it.
  int release() { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

}  // namespace phonefarm::os
