// AdbClient: the agent's side of the adb server's host protocol — device
// lists, `adb connect`/`disconnect`, the host-side transport kick that is
// step 1 of the phone reset ladder (reset_service.hpp) and
// one-shot shell commands — each call one connection (adb_host_connection.hpp).
// It is the real AdbHost (adb_host.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "agent/phone/adb_host.hpp"
#include "common/result.hpp"

namespace phonefarm::phone {

// Stateless: every call opens its own connection, so one AdbClient may be
// used from any number of threads. Every call is bounded by its timeout,
// covering connect and every read and write. Errors:
//  - no server listening: kUnavailable "adb server not running at H:P
//    (connection refused)";
//  - FAIL from the server: its text, kNotFound for an unknown serial or
//    address, else kUnavailable;
//  - timeout: kUnavailable "... timed out after N ms ...";
//  - a malformed serial/address/command: kInvalid, nothing is sent.
class AdbClient final : public AdbHost {
 public:
  explicit AdbClient(AdbEndpoint endpoint);

  const AdbEndpoint& endpoint() const override { return endpoint_; }

  // host:version: the server's protocol version as 4 hex digits ("0029").
  Result<std::string> version(std::chrono::milliseconds timeout) const override;
  // host:devices-l, parsed with parseDeviceList.
  Result<std::vector<AdbDevice>> devices(std::chrono::milliseconds timeout) const override;
  // host:connect:<host:port>. The server answers OKAY either way; its message
  // decides: "connected to X" / "already connected to X" are returned, anything
  // else ("failed to connect to ...", "failed to authenticate to ...") is
  // kUnavailable carrying that message. The server itself waits up to ~10 s
  // for the device's CNXN, so give this a timeout above that.
  Result<std::string> connect(std::string_view host_port, std::chrono::milliseconds timeout) const override;
  // host:disconnect:<host:port>: "disconnected X"; kNotFound "no such device".
  // An empty address (adb's "disconnect everything") is refused: kInvalid.
  Result<std::string> disconnect(std::string_view host_port, std::chrono::milliseconds timeout) const override;
  // host-serial:<serial>:reconnect: the server kicks (and, for USB, resets)
  // the device's transport; it re-appears when the device re-enumerates (USB)
  // — a TCP device stays gone until connect() again. The server answers OKAY
  // even for an unknown serial, so the message decides: "reconnecting ..." is
  // ok, "device 'x' not found" is kNotFound.
  Status reconnect(std::string_view serial, std::chrono::milliseconds timeout) const override;
  // host:transport:<serial>, then shell:<command> (the legacy shell service:
  // stdout and stderr merged, no exit status): the output until the device
  // closes the stream. More than max_output bytes: kUnavailable, no partial
  // output. The command is sent as is (the device's sh parses it); the
  // request must fit in 0xffff bytes (older adbd accept 4096).
  Result<std::string> shell(std::string_view serial, std::string_view command, std::chrono::milliseconds timeout,
                            std::size_t max_output = 1 << 20) const override;

 private:
  Result<std::string> queryPayload(std::string_view op, std::string_view service, std::size_t cap,
                                   std::chrono::milliseconds timeout) const;

  AdbEndpoint endpoint_;
};

}  // namespace phonefarm::phone
