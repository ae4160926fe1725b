// AdbHost: what the phone classes need from the adb server's host protocol —
// the device list, the server's version, `adb connect`/`disconnect`, the
// transport kick of the reset ladder and the liveness probe's shell command. AdbClient (adb_client.hpp) is the real
// one; unit tests use a fake, so the reset ladder, the reconciler and the
// /debug probe run without an adb server.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agent/phone/adb_device.hpp"
#include "common/result.hpp"

namespace phonefarm::phone {

struct AdbEndpoint {
  // A numeric IPv4 or IPv6 address, or "localhost" (= 127.0.0.1): no name
  // resolution, which could block past a call's deadline.
  std::string host = "127.0.0.1";
  std::uint16_t port = 5037;
};

// Every call blocks for at most its timeout (run it off the event loop) and
// may be made from any thread. The errors are AdbClient's (see there).
class AdbHost {
 public:
  virtual ~AdbHost() = default;

  virtual const AdbEndpoint& endpoint() const = 0;
  // host:version: the server's protocol version as 4 hex digits ("0029").
  virtual Result<std::string> version(std::chrono::milliseconds timeout) const = 0;
  // host:devices-l, parsed with parseDeviceList.
  virtual Result<std::vector<AdbDevice>> devices(std::chrono::milliseconds timeout) const = 0;
  // host:connect:<host:port>: the server's "connected to X" message.
  virtual Result<std::string> connect(std::string_view host_port, std::chrono::milliseconds timeout) const = 0;
  // host:disconnect:<host:port>: "disconnected X".
  virtual Result<std::string> disconnect(std::string_view host_port, std::chrono::milliseconds timeout) const = 0;
  // host-serial:<serial>:reconnect: kicks the device's transport.
  virtual Status reconnect(std::string_view serial, std::chrono::milliseconds timeout) const = 0;
  // host:transport:<serial> + shell:<command>: the command's output (the
  // liveness probe's `echo`).
  virtual Result<std::string> shell(std::string_view serial, std::string_view command,
                                    std::chrono::milliseconds timeout, std::size_t max_output = 1 << 20) const = 0;
};

}  // namespace phonefarm::phone
