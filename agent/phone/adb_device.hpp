// AdbDevice and the parser of the adb server's device lists (the payload of
// host:devices-l and of each host:track-devices-l update). The lists come from
// a server that is not trusted: every line and field is checked and capped.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

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

}  // namespace phonefarm::phone
