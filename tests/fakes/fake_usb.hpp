// FakeUsb: a UsbBackend that finds one phone at port 1-1.4 (or none), and
// counts resets and power cycles (either can be made to fail); `on_reset`
// plays the phone re-enumerating.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "agent/phone/usb_backend.hpp"

namespace phonefarm::phone {

class FakeUsb final : public UsbBackend {
 public:
  bool present = true;
  bool reset_fails = false;
  bool power_cycle_fails = false;
  std::function<void()> on_reset;  // e.g. the phone re-enumerates
  std::atomic<int> resets{0};
  std::atomic<int> power_cycles{0};

  Result<UsbDeviceRef> find(const std::optional<std::string>& serial, const std::optional<std::string>&) override {
    if (!present) return makeError(ErrorKind::kNotFound, "no USB device with serial " + serial.value_or("?"));
    UsbDeviceRef d;
    d.port_path = "1-1.4";
    d.serial = serial;
    return d;
  }
  Status reset(const UsbDeviceRef&) override {
    ++resets;
    if (reset_fails) return makeError(ErrorKind::kInternal, "LIBUSB_ERROR_IO");
    if (on_reset) on_reset();
    return okStatus();
  }
  Status powerCycle(const UsbDeviceRef&, std::chrono::milliseconds) override {
    ++power_cycles;
    if (power_cycle_fails) return makeError(ErrorKind::kInternal, "LIBUSB_ERROR_PIPE");
    return okStatus();
  }
};

}  // namespace phonefarm::phone
