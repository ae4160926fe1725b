// The exec shim's log relay ([work] log_max_bytes). The command's stdout and
// stderr are the write ends of two pipes; the shim (the agent's user) reads
// them and writes at most `max_bytes` of each into its log in the control
// dir, then one truncation marker line, and from then on drops what comes,
// still reading it, so that a job is never blocked or killed for writing. The
// bytes dropped go into status.json and become the item's note and the
// phonefarm_log_bytes_dropped_total metric on the agent's side.
//
// Nothing here blocks on a pipe: reads are non-blocking, and one pump() moves
// a bounded amount so that the shim's poll loop also forwards signals while a
// job writes without pause. Bytes move by splice(2) (pipe to file, pipe to
// /dev/null: no copy through the shim), with read/write where the file system
// cannot splice.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/os/file_descriptor.hpp"
#include "common/result.hpp"

namespace phonefarm::exec {

// [work] log_max_bytes when the agent names none.
inline constexpr std::uint64_t kDefaultLogMaxBytes = 64ULL << 20;

// "64 MiB", "512 KiB" for whole multiples, else "1000 bytes".
std::string formatLogCap(std::uint64_t bytes);

// The line a capped log ends with (it starts on a line of its own).
std::string truncationMarker(std::string_view stream, std::uint64_t max_bytes);

// The item's note for what the relay dropped ("stdout truncated at 64 MiB:
// 123 bytes dropped; stderr ..."); none when nothing was dropped.
std::optional<std::string> logTruncationNote(std::uint64_t max_bytes, std::uint64_t stdout_dropped,
                                             std::uint64_t stderr_dropped);

// One stream of the command: a pipe relayed into an open log file.
class LogStream {
 public:
  // `name` is "stdout" or "stderr"; `log_fd` stays the caller's.
  LogStream(std::string name, int log_fd, std::uint64_t max_bytes);

  // Creates the pipe (both ends close-on-exec; the read end non-blocking).
  Status open();
  // The end the command gets as its fd 1 or 2; the shim closes it after the fork.
  int writeFd() const { return write_end_.get(); }
  void closeWriteEnd() { write_end_.reset(); }
  // -1 once every writer has closed the pipe and it is drained (poll skips it).
  int readFd() const { return read_end_.get(); }

  enum class Pumped { kMoved, kEmpty, kEof };
  // Moves what the pipe holds now, at most about `budget` bytes: kMoved when
  // it may hold more, kEmpty when it is empty (writers left), kEof at the end.
  Pumped pump(std::uint64_t budget);

  std::uint64_t written() const { return written_; }
  std::uint64_t dropped() const { return dropped_; }
  // Why the log could not be written, if it could not; the rest was dropped.
  const std::optional<std::string>& logError() const { return log_error_; }

 private:
  long toLog(std::size_t n);
  long toNull(std::size_t n);
  void markTruncated();

  std::string name_;
  int log_fd_;
  std::uint64_t max_bytes_;
  os::FileDescriptor read_end_;
  os::FileDescriptor write_end_;
  os::FileDescriptor null_;
  bool splice_to_log_ = true;
  bool splice_to_null_ = true;
  bool marked_ = false;
  std::uint64_t written_ = 0;
  std::uint64_t dropped_ = 0;
  std::optional<std::string> log_error_;
};

}  // namespace phonefarm::exec
