// UsbBackend: the OS seam for the USB steps of the phone session reset ladder
// (docs/design.md, "Phone ADB/USB session reset"): find a phone on the bus by its
// serial or its configured port path, reset it (`usb_reset`), or switch its
// hub port's power off and on (`hub_power_cycle`). The reset logic talks to
// this interface only, so it runs in unit tests against a fake; the real
// implementation (makeLibusbBackend) is libusb-1.0.
//
// Devices are named by port path, the "BUS-PORT[.PORT...]" form that sysfs
// (/sys/bus/usb/devices/1-1.4) and uhubctl use: it names the physical socket,
// which survives the re-enumeration a reset causes, where the bus address
// does not.
//
// The calls block (a reset takes ~100 ms to seconds; powerCycle sleeps `off`):
// run them off the event loop. The libusb backend may be called from several
// threads at once (libusb is thread-safe); two calls on the same device are
// the caller's to serialise.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::phone {

struct UsbDeviceRef {
  std::string port_path;  // "1-1.4" style: bus number, '-', port numbers joined by '.' (what sysfs and uhubctl call it)
  std::uint8_t bus = 0;
  std::vector<std::uint8_t> ports;
  std::uint16_t vendor_id = 0, product_id = 0;
  std::optional<std::string> serial;  // iSerialNumber string, when readable
};

class UsbBackend {
 public:
  virtual ~UsbBackend() = default;

  // The device whose iSerialNumber equals `serial`, else the one at
  // `port_path`; kNotFound with a message naming what was searched. When
  // several devices carry `serial` (cheap phones share one), the one at
  // `port_path` wins, and without a port path that is kConflict rather than a
  // guess. kInvalid for a malformed port path or when neither is given.
  virtual Result<UsbDeviceRef> find(const std::optional<std::string>& serial,
                                    const std::optional<std::string>& port_path) = 0;

  // A USB port reset of the device at `device`'s port path (looked up again at
  // call time): kNotFound if nothing is there, kUnavailable on permission
  // errors, kInternal otherwise. The device re-enumerates afterwards (new bus
  // address, same port path); waiting for it to come back is the caller's job.
  virtual Status reset(const UsbDeviceRef& device) = 0;

  // Switches off the power of the hub port the device hangs off (parent hub =
  // the port path without its last component; port = the last component),
  // waits `off`, and switches it on again. kUnavailable "hub does not support
  // per-port power switching" for ganged or unswitched hubs; kNotFound if the
  // hub is gone. The device itself need not be present: a phone that fell off
  // the bus is exactly what this is for.
  virtual Status powerCycle(const UsbDeviceRef& device, std::chrono::milliseconds off) = 0;
};

// The libusb-1.0 backend with its own libusb context. If libusb cannot be
// initialised (no usbfs, e.g. in a container without /dev/bus/usb) the backend
// still exists and every call returns kUnavailable with the reason.
std::unique_ptr<UsbBackend> makeLibusbBackend();

// "1-1.4" -> bus 1 (stored through `bus` when not null), ports {1, 4}. Strict,
// because the path comes from config: decimal without sign or leading zeros,
// bus and ports 1..255, 1..7 ports (the USB tier limit), nothing else.
// nullopt when invalid; `*bus` is then left alone.
std::optional<std::vector<std::uint8_t>> parsePortPath(std::string_view path, std::uint8_t* bus);

// The inverse: bus 1, ports {1, 4} -> "1-1.4".
std::string formatPortPath(std::uint8_t bus, const std::vector<std::uint8_t>& ports);

}  // namespace phonefarm::phone
