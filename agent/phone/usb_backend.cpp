// The libusb-1.0 UsbBackend. Every call takes a fresh snapshot of the bus and
// looks the device up by port path, so nothing cached goes stale across the
// re-enumerations this backend causes. Handles, device lists and the context
// are owned by RAII wrappers; the context is this backend's own, so libusb
// state is never shared with anything else in the process.
#include "agent/phone/usb_backend.hpp"

#include <libusb.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <span>
#include <thread>
#include <utility>

#include "common/text/printable.hpp"

namespace phonefarm::phone {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxPortDepth = 7;  // USB 3.x: at most 7 tiers below the root hub
constexpr unsigned kControlTimeoutMs = 1000;
constexpr int kPowerOnAttempts = 3;
constexpr const char* kSysfsUsbDevices = "/sys/bus/usb/devices";

// Hub class requests (USB 2.0 §11.24, USB 3.2 §10.16). Spelled as numbers:
// OR-ing libusb's separate enums is deprecated in C++20.
constexpr std::uint8_t kToPortRequestType = 0x23;      // host-to-device | class | recipient other (a port)
constexpr std::uint8_t kFromHubRequestType = 0xA0;     // device-to-host | class | recipient device (the hub)
constexpr std::uint8_t kGetDescriptor = 6;             // LIBUSB_REQUEST_GET_DESCRIPTOR
constexpr std::uint8_t kClearFeature = 1;              // LIBUSB_REQUEST_CLEAR_FEATURE
constexpr std::uint8_t kSetFeature = 3;                // LIBUSB_REQUEST_SET_FEATURE
constexpr std::uint16_t kPortFeaturePower = 8;         // PORT_POWER
constexpr std::uint16_t kPowerSwitchingMask = 0x0003;  // wHubCharacteristics D1..D0
constexpr std::uint16_t kPerPortPowerSwitching = 0x0001;
static_assert(kGetDescriptor == LIBUSB_REQUEST_GET_DESCRIPTOR && kClearFeature == LIBUSB_REQUEST_CLEAR_FEATURE &&
              kSetFeature == LIBUSB_REQUEST_SET_FEATURE);
static_assert(LIBUSB_DT_HUB == 0x29 && LIBUSB_DT_SUPERSPEED_HUB == 0x2a);

struct ContextDeleter {
  void operator()(libusb_context* ctx) const noexcept { libusb_exit(ctx); }
};
struct HandleDeleter {
  void operator()(libusb_device_handle* handle) const noexcept { libusb_close(handle); }
};
struct DeviceListDeleter {
  void operator()(libusb_device** list) const noexcept { libusb_free_device_list(list, /*unref_devices=*/1); }
};
using ContextPtr = std::unique_ptr<libusb_context, ContextDeleter>;
using HandlePtr = std::unique_ptr<libusb_device_handle, HandleDeleter>;

// The devices on the bus at one moment; the list holds a reference to each
// device until it is freed, so the libusb_device pointers stay valid that long.
class DeviceList {
 public:
  DeviceList(libusb_device** list, std::size_t size) : list_(list), size_(size) {}
  std::span<libusb_device* const> devices() const { return {list_.get(), size_}; }

 private:
  std::unique_ptr<libusb_device*, DeviceListDeleter> list_;
  std::size_t size_;
};

struct Location {
  std::uint8_t bus = 0;
  std::vector<std::uint8_t> ports;  // empty for a root hub
  bool operator==(const Location&) const = default;
};

// Config and device strings end up in messages and logs: printable ASCII only,
// bounded, quoted.
std::string printable(std::string_view s) { return text::printable(s, {.max_bytes = 64, .quoted = true}); }

Error usbError(const std::string& context, int rc) {
  ErrorKind kind = ErrorKind::kInternal;
  if (rc == LIBUSB_ERROR_NO_DEVICE || rc == LIBUSB_ERROR_NOT_FOUND) kind = ErrorKind::kNotFound;
  std::string hint;
  if (rc == LIBUSB_ERROR_ACCESS) {
    kind = ErrorKind::kUnavailable;
    hint = "; the agent needs read/write on the device node (udev/70-phonefarm-agent.rules)";
  }
  return makeError(kind, context + ": " + libusb_strerror(rc) + " [" + libusb_error_name(rc) + "]" + hint);
}

std::optional<std::uint8_t> parseComponent(std::string_view s) {
  if (s.empty() || s.size() > 3 || s.front() == '0') return std::nullopt;  // no leading zeros, and 0 is no bus or port
  unsigned value = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 255) return std::nullopt;
  return static_cast<std::uint8_t>(value);
}

std::optional<Location> locationOf(libusb_device* dev) {
  std::array<std::uint8_t, kMaxPortDepth> ports{};
  const int n = libusb_get_port_numbers(dev, ports.data(), static_cast<int>(ports.size()));
  if (n < 0) return std::nullopt;
  return Location{libusb_get_bus_number(dev), {ports.begin(), ports.begin() + n}};
}

libusb_device* deviceAt(const DeviceList& list, const Location& wanted) {
  for (libusb_device* dev : list.devices()) {
    if (locationOf(dev) == wanted) return dev;
  }
  return nullptr;
}

// Where a UsbDeviceRef points: its port path, or bus + ports when the path is
// empty; both must agree when both are set.
Result<Location> refLocation(const UsbDeviceRef& device) {
  if (!device.port_path.empty()) {
    std::uint8_t bus = 0;
    auto ports = parsePortPath(device.port_path, &bus);
    if (!ports) return makeError(ErrorKind::kInvalid, "invalid USB port path " + printable(device.port_path));
    Location location{bus, std::move(*ports)};
    if (!device.ports.empty() && (device.bus != location.bus || device.ports != location.ports)) {
      return makeError(ErrorKind::kInvalid, "USB device reference: port path " + device.port_path +
                                                " disagrees with bus/ports " +
                                                formatPortPath(device.bus, device.ports));
    }
    return location;
  }
  if (auto path = formatPortPath(device.bus, device.ports); !parsePortPath(path, nullptr)) {
    return makeError(ErrorKind::kInvalid, "USB device reference has no valid port path");
  }
  return Location{device.bus, device.ports};
}

// The iSerialNumber string. The kernel's copy in sysfs first: reading it does
// no I/O to the device, so it works for a wedged phone (the one being reset)
// and without access to its node. libusb's descriptor read when there is no
// sysfs.
std::optional<std::string> readSerial(libusb_device* dev, const libusb_device_descriptor& desc,
                                      const std::string& port_path) {
  std::error_code ec;
  const fs::path sysfs_dir = fs::path(kSysfsUsbDevices) / port_path;  // port_path is digits, '-' and '.' only
  if (fs::is_directory(sysfs_dir, ec)) {
    std::ifstream in(sysfs_dir / "serial");
    std::string serial;
    if (!in || !std::getline(in, serial)) return std::nullopt;  // the device has no serial string
    return serial;
  }
  if (desc.iSerialNumber == 0) return std::nullopt;
  libusb_device_handle* raw = nullptr;
  if (const int rc = libusb_open(dev, &raw); rc != 0) {
    spdlog::debug("phone.usb.serial_unreadable port={} error={}", port_path, libusb_error_name(rc));
    return std::nullopt;
  }
  HandlePtr handle(raw);
  std::array<unsigned char, 256> buf{};
  const int n =
      libusb_get_string_descriptor_ascii(handle.get(), desc.iSerialNumber, buf.data(), static_cast<int>(buf.size()));
  if (n <= 0) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(buf.data()), static_cast<std::size_t>(n));
}

UsbDeviceRef describe(libusb_device* dev, const Location& location) {
  libusb_device_descriptor desc{};
  libusb_get_device_descriptor(dev, &desc);  // cannot fail since libusb 1.0.16
  UsbDeviceRef ref;
  ref.port_path = formatPortPath(location.bus, location.ports);
  ref.bus = location.bus;
  ref.ports = location.ports;
  ref.vendor_id = desc.idVendor;
  ref.product_id = desc.idProduct;
  ref.serial = readSerial(dev, desc, ref.port_path);
  return ref;
}

long long msSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

class LibusbBackend final : public UsbBackend {
 public:
  LibusbBackend() {
    libusb_context* raw = nullptr;
    if (const int rc = libusb_init(&raw); rc != 0) {
      std::error_code ec;
      unavailable_ = std::string("libusb unavailable: libusb_init failed: ") + libusb_strerror(rc) + " [" +
                     libusb_error_name(rc) + "]" +
                     (fs::exists("/dev/bus/usb", ec) ? "" : " (no /dev/bus/usb on this host)");
      spdlog::warn("phone.usb.unavailable reason=\"{}\"", unavailable_);
      return;
    }
    ctx_.reset(raw);
  }

  Result<UsbDeviceRef> find(const std::optional<std::string>& serial,
                            const std::optional<std::string>& port_path) override {
    if (!serial && !port_path)
      return makeError(ErrorKind::kInvalid, "neither a serial nor a USB port path to look for");
    if (serial && serial->empty()) return makeError(ErrorKind::kInvalid, "empty serial");
    std::optional<Location> wanted;
    if (port_path) {
      std::uint8_t bus = 0;
      auto ports = parsePortPath(*port_path, &bus);
      if (!ports) {
        return makeError(ErrorKind::kInvalid, "invalid USB port path " + printable(*port_path) +
                                                  " (expected BUS-PORT[.PORT...], e.g. 1-1.4)");
      }
      wanted = Location{bus, std::move(*ports)};
    }
    auto list = snapshot();
    if (!list) return list.error();

    std::vector<UsbDeviceRef> with_serial;
    std::optional<UsbDeviceRef> at_port;
    std::size_t searched = 0, unreadable = 0;
    for (libusb_device* dev : list->devices()) {
      auto location = locationOf(dev);
      if (!location || location->ports.empty()) continue;  // root hubs are never phones
      ++searched;
      const bool here = wanted && *location == *wanted;
      if (!serial && !here) continue;
      UsbDeviceRef ref = describe(dev, *location);
      if (!ref.serial) ++unreadable;
      if (serial && ref.serial == *serial) with_serial.push_back(ref);
      if (here) at_port = std::move(ref);
    }

    const std::string wanted_text = (serial ? "with serial " + printable(*serial) : std::string()) +
                                    (serial && wanted ? " or " : "") +
                                    (wanted ? "at port " + formatPortPath(wanted->bus, wanted->ports) : std::string());
    if (with_serial.size() == 1) {
      if (at_port && at_port->port_path != with_serial.front().port_path) {
        spdlog::warn("phone.usb.port_mismatch serial={} found_at={} configured_port={}", printable(*serial),
                     with_serial.front().port_path, at_port->port_path);
      }
      return std::move(with_serial.front());
    }
    if (with_serial.size() > 1 && !at_port) {
      std::string where;
      for (const auto& d : with_serial) where += (where.empty() ? "" : ", ") + d.port_path;
      return makeError(ErrorKind::kConflict, std::to_string(with_serial.size()) + " USB devices have serial " +
                                                 printable(*serial) + " (at " + where +
                                                 "); configure the phone's usb_port to pick one");
    }
    if (at_port) {
      if (serial) {
        spdlog::warn("phone.usb.serial_not_found serial={} using_port={} serial_there={}", printable(*serial),
                     at_port->port_path, at_port->serial ? printable(*at_port->serial) : "unreadable");
      }
      return std::move(*at_port);
    }
    std::string detail = std::to_string(searched) + " devices on the bus";
    if (serial && unreadable > 0) detail += ", " + std::to_string(unreadable) + " with an unreadable serial";
    return makeError(ErrorKind::kNotFound, "no USB device " + wanted_text + " (" + detail + ")");
  }

  Status reset(const UsbDeviceRef& device) override {
    auto location = refLocation(device);
    if (!location) return location.error();
    const std::string path = formatPortPath(location->bus, location->ports);
    auto list = snapshot();
    if (!list) return list.error();
    libusb_device* dev = deviceAt(*list, *location);
    if (!dev) return makeError(ErrorKind::kNotFound, "no USB device at port " + path + " to reset");
    auto handle = open(dev, "opening USB device at port " + path);
    if (!handle) return handle.error();

    const auto start = Clock::now();
    const int rc = libusb_reset_device(handle->get());
    // NOT_FOUND: the kernel could not restore the old state and the device
    // re-enumerates as if re-plugged, which is what a reset is for.
    if (rc != 0 && rc != LIBUSB_ERROR_NOT_FOUND) return usbError("resetting USB device at port " + path, rc);
    spdlog::info("phone.usb.reset port={} reenumerating={} took_ms={}", path, rc == LIBUSB_ERROR_NOT_FOUND,
                 msSince(start));
    return okStatus();
  }

  Status powerCycle(const UsbDeviceRef& device, std::chrono::milliseconds off) override {
    auto location = refLocation(device);
    if (!location) return location.error();
    const std::string path = formatPortPath(location->bus, location->ports);
    const std::uint8_t port = location->ports.back();
    const Location hub_location{location->bus, {location->ports.begin(), location->ports.end() - 1}};
    const std::string hub_name = hub_location.ports.empty()
                                     ? "root hub of bus " + std::to_string(hub_location.bus)
                                     : "hub " + formatPortPath(hub_location.bus, hub_location.ports);

    auto list = snapshot();
    if (!list) return list.error();
    libusb_device* hub = deviceAt(*list, hub_location);
    if (!hub) return makeError(ErrorKind::kNotFound, "no " + hub_name + " (the parent of port " + path + ")");
    libusb_device_descriptor desc{};
    libusb_get_device_descriptor(hub, &desc);
    if (desc.bDeviceClass != LIBUSB_CLASS_HUB) {
      return makeError(ErrorKind::kInvalid, "the parent of port " + path + " is not a hub");
    }
    auto handle = open(hub, "opening " + hub_name);
    if (!handle) return handle.error();
    if (auto st = checkPerPortPower(handle->get(), hub, desc, hub_name, port); !st) return st;

    int rc = libusb_control_transfer(handle->get(), kToPortRequestType, kClearFeature, kPortFeaturePower, port, nullptr,
                                     0, kControlTimeoutMs);
    if (rc < 0) return usbError("switching off port " + std::to_string(port) + " of " + hub_name, rc);
    spdlog::info("phone.usb.port_power_off port={} off_ms={}", path, off.count());
    // The wait is the point of the call; this is the OS seam, so it sleeps
    // here rather than take a clock (the reset logic above it is testable).
    if (off > std::chrono::milliseconds::zero()) std::this_thread::sleep_for(off);

    // Leaving a phone unpowered is worse than a slow reset: retry power-on.
    for (int attempt = 1; attempt <= kPowerOnAttempts; ++attempt) {
      rc = libusb_control_transfer(handle->get(), kToPortRequestType, kSetFeature, kPortFeaturePower, port, nullptr, 0,
                                   kControlTimeoutMs);
      if (rc >= 0) {
        spdlog::info("phone.usb.port_power_on port={} attempt={}", path, attempt);
        return okStatus();
      }
      spdlog::warn("phone.usb.port_power_on_failed port={} attempt={} error={}", path, attempt, libusb_error_name(rc));
    }
    Error error = usbError("switching port " + std::to_string(port) + " of " + hub_name + " back on", rc);
    error.message += " (the port may still be off)";
    spdlog::error("phone.usb.port_left_off port={} error=\"{}\"", path, error.message);
    return error;
  }

 private:
  Error unavailable() const { return makeError(ErrorKind::kUnavailable, unavailable_); }

  Result<DeviceList> snapshot() const {
    if (!ctx_) return unavailable();
    libusb_device** raw = nullptr;
    const ssize_t n = libusb_get_device_list(ctx_.get(), &raw);
    if (n < 0) return usbError("listing USB devices", static_cast<int>(n));
    return DeviceList(raw, static_cast<std::size_t>(n));
  }

  static Result<HandlePtr> open(libusb_device* dev, const std::string& context) {
    libusb_device_handle* raw = nullptr;
    if (const int rc = libusb_open(dev, &raw); rc != 0) return usbError(context, rc);
    return HandlePtr(raw);
  }

  // Reads the hub descriptor (USB 2.0 §11.23.2.1, USB 3.2 §10.15.2.1: the
  // SuperSpeed one has its own type) and refuses ganged or unswitched hubs:
  // there ClearPortFeature(PORT_POWER) is accepted but cuts every port, or
  // none.
  static Status checkPerPortPower(libusb_device_handle* handle, libusb_device* hub,
                                  const libusb_device_descriptor& desc, const std::string& hub_name,
                                  std::uint8_t port) {
    const bool superspeed = libusb_get_device_speed(hub) >= LIBUSB_SPEED_SUPER || desc.bcdUSB >= 0x0300;
    const std::uint8_t type = superspeed ? LIBUSB_DT_SUPERSPEED_HUB : LIBUSB_DT_HUB;
    std::array<unsigned char, 64> buf{};
    const int n =
        libusb_control_transfer(handle, kFromHubRequestType, kGetDescriptor, static_cast<std::uint16_t>(type << 8), 0,
                                buf.data(), static_cast<std::uint16_t>(buf.size()), kControlTimeoutMs);
    if (n < 0) return usbError("reading the hub descriptor of " + hub_name, n);
    if (n < 5 || buf[0] < 5 || buf[1] != type) {
      return makeError(ErrorKind::kInternal, "malformed hub descriptor from " + hub_name + " (" + std::to_string(n) +
                                                 " bytes, type " + std::to_string(buf[1]) + ")");
    }
    const unsigned nports = buf[2];
    const auto characteristics = static_cast<std::uint16_t>(buf[3] | (buf[4] << 8));
    if ((characteristics & kPowerSwitchingMask) != kPerPortPowerSwitching) {
      return makeError(ErrorKind::kUnavailable,
                       "hub does not support per-port power switching (" + hub_name + ", power switching mode " +
                           std::to_string(characteristics & kPowerSwitchingMask) + ": 0 ganged, 2/3 none)");
    }
    if (port > nports) {
      return makeError(ErrorKind::kInvalid, hub_name + " has " + std::to_string(nports) + " ports; there is no port " +
                                                std::to_string(port));
    }
    return okStatus();
  }

  ContextPtr ctx_;
  std::string unavailable_;
};

}  // namespace

std::optional<std::vector<std::uint8_t>> parsePortPath(std::string_view path, std::uint8_t* bus) {
  const auto dash = path.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const auto bus_number = parseComponent(path.substr(0, dash));
  if (!bus_number) return std::nullopt;
  std::vector<std::uint8_t> ports;
  std::string_view rest = path.substr(dash + 1);
  for (;;) {
    const auto dot = rest.find('.');
    const auto port = parseComponent(rest.substr(0, dot));  // a second '-' or anything else fails here
    if (!port || ports.size() == kMaxPortDepth) return std::nullopt;
    ports.push_back(*port);
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  if (bus) *bus = *bus_number;
  return ports;
}

std::string formatPortPath(std::uint8_t bus, const std::vector<std::uint8_t>& ports) {
  std::string out = std::to_string(bus) + "-";
  for (std::size_t i = 0; i < ports.size(); ++i) {
    if (i > 0) out += '.';
    out += std::to_string(ports[i]);
  }
  return out;
}

std::unique_ptr<UsbBackend> makeLibusbBackend() { return std::make_unique<LibusbBackend>(); }

}  // namespace phonefarm::phone
