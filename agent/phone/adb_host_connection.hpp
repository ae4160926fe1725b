// AdbHostConnection: the framing of the adb server's host protocol over one
// TCP connection (127.0.0.1:5037 by default), and AdbDeadline, the time
// budget every one of its waits is bounded by. AdbClient and DeviceTracker
// are built on it.
//
// Wire format: a request is 4 lowercase hex digits (its length) followed by the
// service name; the server answers "OKAY", or "FAIL" + 4 hex digits + message.
// What follows an OKAY depends on the service: one length-prefixed payload
// (host:version, host:devices-l, host:connect...), a stream of them
// (host:track-devices-l, see device_tracker.hpp), or raw bytes until EOF (a
// device service after host:transport:<serial>).
//
// Plain POSIX sockets, non-blocking, every wait a poll() against one deadline
// per call: a stuck or hostile server costs a caller at most its timeout.
// Every length and payload the server sends is capped before it is believed.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "agent/phone/adb_host.hpp"
#include "common/result.hpp"

namespace phonefarm::phone {

// One call's time budget: an absolute steady-clock deadline plus the budget it
// came from, so a timeout can say "timed out after 800 ms".
struct AdbDeadline {
  std::chrono::steady_clock::time_point at;
  std::chrono::milliseconds budget;

  static AdbDeadline after(std::chrono::milliseconds budget);
  static AdbDeadline never();
  bool isNever() const { return at == std::chrono::steady_clock::time_point::max(); }
  bool passed() const;
  // The poll() timeout left: -1 for never, else >= 0 (rounded up).
  int pollTimeoutMs() const;
};

// One TCP connection to the adb server, speaking the host protocol's framing.
// AdbClient and DeviceTracker are built on it; use those. Move-only; closes on
// destruction. Not thread-safe (one user at a time).
//
// `wake_fd` (borrowed, may be -1): an fd watched alongside the socket by every
// wait; when it turns readable the operation fails with "interrupted". The
// DeviceTracker passes its eventfd so stop() cuts any wait short.
class AdbHostConnection {
 public:
  // Connects (non-blocking connect + poll). `refused` (optional) is set to
  // true when nothing listens there (ECONNREFUSED): the server is not running.
  static Result<AdbHostConnection> open(const AdbEndpoint& endpoint, const AdbDeadline& deadline, int wake_fd = -1,
                                        bool* refused = nullptr);

  AdbHostConnection(AdbHostConnection&& other) noexcept;
  AdbHostConnection& operator=(AdbHostConnection&& other) noexcept;
  AdbHostConnection(const AdbHostConnection&) = delete;
  AdbHostConnection& operator=(const AdbHostConnection&) = delete;
  ~AdbHostConnection();

  // Sends one request; kInvalid when it is empty, longer than 0xffff bytes or
  // contains a NUL.
  Status sendRequest(std::string_view service, const AdbDeadline& deadline);
  // Reads "OKAY" (ok) or "FAIL"+message (the error carries the server's text:
  // kNotFound for "device ... not found"/"no such device", else kUnavailable).
  Status readStatus(const AdbDeadline& deadline);
  // sendRequest + readStatus.
  Status request(std::string_view service, const AdbDeadline& deadline);
  // One 4-hex-digit length and that many bytes; kUnavailable when the digits
  // are not hex, the length exceeds `cap` or the stream ends early.
  Result<std::string> readLengthPrefixed(std::size_t cap, const AdbDeadline& deadline);
  // Raw bytes until the server closes; kUnavailable past `cap` bytes.
  Result<std::string> readUntilEof(std::size_t cap, const AdbDeadline& deadline);
  // Waits until there is something to read (or EOF) without consuming it.
  Status waitReadable(const AdbDeadline& deadline);

  int fd() const { return fd_; }

 private:
  AdbHostConnection(int fd, int wake_fd) : fd_(fd), wake_fd_(wake_fd) {}
  Status readExact(char* out, std::size_t size, std::string_view what, const AdbDeadline& deadline);

  int fd_ = -1;
  int wake_fd_ = -1;
};

}  // namespace phonefarm::phone
