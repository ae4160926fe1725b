// AdbClient: the agent's side of the adb server's host protocol (TCP,
// 127.0.0.1:5037 by default) — device lists, `adb connect`/`disconnect`,
// the host-side transport kick that is step 1 of the phone reset ladder
// (docs/design.md, "Phone ADB/USB session reset") and one-shot shell commands.
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

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::phone {

struct AdbDevice {
  std::string serial;
  // "device", "offline", "unauthorized", "authorizing", "connecting",
  // "bootloader", "recovery", ... For a USB device the server may not open,
  // adb's whole help sentence: "no permissions (...); see [http://...]".
  std::string state;
  // The key:value fields of the long listing: usb (the USB port path, e.g.
  // "1-1.4"), product, model, device, transport_id; unknown keys are kept.
  std::map<std::string, std::string> props;

  bool operator==(const AdbDevice&) const = default;
};

// Limits parseDeviceList enforces on what the server (or anything posing as
// it) sends; lines or fields beyond them are dropped, never truncated.
inline constexpr std::size_t kMaxAdbDevices = 512;
inline constexpr std::size_t kMaxAdbLineBytes = 4096;
inline constexpr std::size_t kMaxAdbSerialBytes = 255;
inline constexpr std::size_t kMaxAdbStateBytes = 512;
inline constexpr std::size_t kMaxAdbProps = 16;
inline constexpr std::size_t kMaxAdbPropValueBytes = 255;

// Parses a host:devices-l (or host:devices) payload: one device a line,
// "SERIAL<spaces or tab>STATE[ key:value]...". Malformed lines — no state,
// control or non-ASCII bytes in the serial or state, over-long lines or
// fields — are skipped; a malformed key:value field is dropped on its own;
// at most kMaxAdbDevices devices. Never throws.
std::vector<AdbDevice> parseDeviceList(std::string_view payload);

struct AdbEndpoint {
  // A numeric IPv4 or IPv6 address, or "localhost" (= 127.0.0.1): no name
  // resolution, which could block past a call's deadline.
  std::string host = "127.0.0.1";
  std::uint16_t port = 5037;
};

// One call's time budget: an absolute steady-clock deadline plus the budget it
// came from, so a timeout can say "timed out after 800 ms".
struct AdbDeadline {
  std::chrono::steady_clock::time_point at;
  std::chrono::milliseconds budget;

  static AdbDeadline after(std::chrono::milliseconds budget);
  static AdbDeadline never();
  bool isNever() const { return at == std::chrono::steady_clock::time_point::max(); }
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

// Stateless: every call opens its own connection, so one AdbClient may be
// used from any number of threads. Every call is bounded by its timeout,
// covering connect and every read and write. Errors:
//  - no server listening: kUnavailable "adb server not running at H:P
//    (connection refused)";
//  - FAIL from the server: its text, kNotFound for an unknown serial or
//    address, else kUnavailable;
//  - timeout: kUnavailable "... timed out after N ms ...";
//  - a malformed serial/address/command: kInvalid, nothing is sent.
class AdbClient {
 public:
  explicit AdbClient(AdbEndpoint endpoint);

  const AdbEndpoint& endpoint() const { return endpoint_; }

  // host:version: the server's protocol version as 4 hex digits ("0029").
  Result<std::string> version(std::chrono::milliseconds timeout) const;
  // host:devices-l, parsed with parseDeviceList.
  Result<std::vector<AdbDevice>> devices(std::chrono::milliseconds timeout) const;
  // host:connect:<host:port>. The server answers OKAY either way; its message
  // decides: "connected to X" / "already connected to X" are returned, anything
  // else ("failed to connect to ...", "failed to authenticate to ...") is
  // kUnavailable carrying that message. The server itself waits up to ~10 s
  // for the device's CNXN, so give this a timeout above that.
  Result<std::string> connect(std::string_view host_port, std::chrono::milliseconds timeout) const;
  // host:disconnect:<host:port>: "disconnected X"; kNotFound "no such device".
  // An empty address (adb's "disconnect everything") is refused: kInvalid.
  Result<std::string> disconnect(std::string_view host_port, std::chrono::milliseconds timeout) const;
  // host-serial:<serial>:reconnect: the server kicks (and, for USB, resets)
  // the device's transport; it re-appears when the device re-enumerates (USB)
  // — a TCP device stays gone until connect() again. The server answers OKAY
  // even for an unknown serial, so the message decides: "reconnecting ..." is
  // ok, "device 'x' not found" is kNotFound.
  Status reconnect(std::string_view serial, std::chrono::milliseconds timeout) const;
  // host:transport:<serial>, then shell:<command> (the legacy shell service:
  // stdout and stderr merged, no exit status): the output until the device
  // closes the stream. More than max_output bytes: kUnavailable, no partial
  // output. The command is sent as is (the device's sh parses it); the
  // request must fit in 0xffff bytes (older adbd accept 4096).
  Result<std::string> shell(std::string_view serial, std::string_view command, std::chrono::milliseconds timeout,
                            std::size_t max_output = 1 << 20) const;

 private:
  Result<std::string> queryPayload(std::string_view op, std::string_view service, std::size_t cap,
                                   std::chrono::milliseconds timeout) const;

  AdbEndpoint endpoint_;
};

// Runs `adb_path -P <port> start-server` (posix_spawn, no shell, no PATH
// search) and waits for it to exit, which adb does once its server answers.
// The child gets the agent's environment plus `env_overrides` ("K=V", replacing
// any inherited K; e.g. HOME, where adb keeps its key pair), /dev/null as
// stdin, default signal state, a new session and no other descriptor (the
// server it forks lives on; it must not hold the agent's sockets). Bounded by
// `timeout` (the child is killed past it). A non-zero exit or a timeout is
// kUnavailable with the child's output (capped) in the message; a missing
// binary kNotFound. If something else in the process reaps the child first
// (the daemon, as child subreaper, reaps zombies it does not supervise) its
// exit status is lost and this returns ok: callers confirm by connecting.
// Note the server adb forks is re-parented to the nearest subreaper — the
// agent, when it is one — which must then reap it when it exits.
Status startAdbServer(const std::string& adb_path, const AdbEndpoint& endpoint, std::chrono::milliseconds timeout,
                      const std::vector<std::string>& env_overrides = {});

// startAdbServer that also gives up (killing the child) when `wake_fd`
// turns readable: for the DeviceTracker, whose stop() must not wait for it.
Status startAdbServer(const std::string& adb_path, const AdbEndpoint& endpoint, std::chrono::milliseconds timeout,
                      const std::vector<std::string>& env_overrides, int wake_fd);

}  // namespace phonefarm::phone
