// parsePortPath/formatPortPath, and the real libusb backend's not-found
// paths. CI has no USB devices, and hosts without /dev/bus/usb (containers)
// cannot even initialise libusb: there the backend must say it is unavailable,
// so each test accepts exactly kNotFound or kUnavailable and checks the
// message for whichever it got. The fake that drives the reset logic lives
// with that logic's tests.
#include "agent/phone/usb_backend.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

namespace phonefarm::phone {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Ports = std::vector<std::uint8_t>;
using namespace std::chrono_literals;
using namespace std::string_literals;

TEST(ParsePortPath, AcceptsSysfsStylePaths) {
  struct Case {
    std::string path;
    std::uint8_t bus;
    Ports ports;
  };
  const std::vector<Case> cases = {
      {"1-1", 1, {1}},
      {"1-1.4", 1, {1, 4}},
      {"3-10.2", 3, {10, 2}},
      {"255-255.254", 255, {255, 254}},
      {"2-1.2.3.4.5.6.7", 2, {1, 2, 3, 4, 5, 6, 7}},  // 7 tiers: the deepest USB allows
  };
  for (const auto& c : cases) {
    std::uint8_t bus = 0;
    const auto ports = parsePortPath(c.path, &bus);
    ASSERT_TRUE(ports.has_value()) << c.path;
    EXPECT_EQ(bus, c.bus) << c.path;
    EXPECT_EQ(*ports, c.ports) << c.path;
    EXPECT_EQ(formatPortPath(bus, *ports), c.path);
  }
}

TEST(ParsePortPath, NullBusPointerIsAllowed) {
  const auto ports = parsePortPath("4-2.1", nullptr);
  ASSERT_TRUE(ports.has_value());
  EXPECT_EQ(*ports, (Ports{2, 1}));
}

TEST(ParsePortPath, RejectsAnythingElseAndLeavesBusAlone) {
  const std::vector<std::string> bad = {
      "",
      "1",
      "-",
      "-1",
      "1-",
      "1-.",
      "1-1.",
      "1-.1",
      "1-1..4",
      "256-1",
      "1-256",
      "1000-1",
      "1-9999",
      "0-1",
      "1-0",
      "1-1.0",
      "01-1",
      "1-01",
      "a-1",
      "1-a",
      "1-1.4a",
      "usb1",
      "1-1-2",
      "1-1:1.0",  // an interface, not a device
      "+1-1",
      "1-+1",
      " 1-1",
      "1-1 ",
      "1-1\n",
      "1-1\0"s,
      "1-1/../2",
      "1-1.2.3.4.5.6.7.8",  // 8 tiers: too deep
      "\xff-1",
  };
  for (const auto& path : bad) {
    std::uint8_t bus = 77;
    EXPECT_FALSE(parsePortPath(path, &bus).has_value()) << '"' << path << '"';
    EXPECT_EQ(bus, 77) << '"' << path << '"';
  }
}

class LibusbBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = makeLibusbBackend();
    ASSERT_NE(backend_, nullptr);
  }

  // The other calls must agree with find() on whether libusb is usable here.
  bool available() {
    auto probe = backend_->find(std::nullopt, "9-9.9");
    EXPECT_FALSE(probe.ok());
    return probe.ok() || probe.error().kind != ErrorKind::kUnavailable;
  }

  static void expectUnavailable(const Error& error) {
    EXPECT_EQ(error.kind, ErrorKind::kUnavailable) << error.message;
    EXPECT_THAT(error.message, HasSubstr("libusb unavailable: libusb_init failed: "));
  }

  static UsbDeviceRef nowhere(std::string path) {
    UsbDeviceRef ref;
    ref.bus = 0;
    ref.port_path = std::move(path);
    return ref;
  }

  std::unique_ptr<UsbBackend> backend_;
};

TEST_F(LibusbBackendTest, FindNamesBothTheSerialAndThePortItLookedFor) {
  auto found = backend_->find("NO-SUCH-SERIAL-xyz", "9-9.9");
  ASSERT_FALSE(found.ok()) << "found a device at " << found->port_path;
  const Error& error = found.error();
  std::cout << "[ NOTE     ] " << error.message << "\n";
  if (error.kind == ErrorKind::kUnavailable) {
    expectUnavailable(error);
    return;
  }
  EXPECT_EQ(error.kind, ErrorKind::kNotFound) << error.message;
  EXPECT_THAT(error.message, HasSubstr("\"NO-SUCH-SERIAL-xyz\""));
  EXPECT_THAT(error.message, HasSubstr("port 9-9.9"));
}

TEST_F(LibusbBackendTest, FindBySerialOnlyOrPortOnly) {
  const bool usable = available();
  auto by_serial = backend_->find("NO-SUCH-SERIAL-xyz", std::nullopt);
  auto by_port = backend_->find(std::nullopt, "9-9.9");
  ASSERT_FALSE(by_serial.ok());
  ASSERT_FALSE(by_port.ok());
  if (!usable) {
    expectUnavailable(by_serial.error());
    expectUnavailable(by_port.error());
    return;
  }
  EXPECT_EQ(by_serial.error().kind, ErrorKind::kNotFound) << by_serial.error().message;
  EXPECT_THAT(by_serial.error().message, HasSubstr("serial \"NO-SUCH-SERIAL-xyz\""));
  EXPECT_THAT(by_serial.error().message, Not(HasSubstr("port")));
  EXPECT_EQ(by_port.error().kind, ErrorKind::kNotFound) << by_port.error().message;
  EXPECT_THAT(by_port.error().message, HasSubstr("port 9-9.9"));
  EXPECT_THAT(by_port.error().message, Not(HasSubstr("serial")));
}

// Bad input is the caller's fault whether or not libusb works on this host.
TEST_F(LibusbBackendTest, InvalidRequestsAreInvalidEverywhere) {
  auto neither = backend_->find(std::nullopt, std::nullopt);
  ASSERT_FALSE(neither.ok());
  EXPECT_EQ(neither.error().kind, ErrorKind::kInvalid);

  auto empty_serial = backend_->find("", std::nullopt);
  ASSERT_FALSE(empty_serial.ok());
  EXPECT_EQ(empty_serial.error().kind, ErrorKind::kInvalid);

  auto bad_path = backend_->find("R58M123ABC", "1-1\n..");
  ASSERT_FALSE(bad_path.ok());
  EXPECT_EQ(bad_path.error().kind, ErrorKind::kInvalid);
  EXPECT_THAT(bad_path.error().message, HasSubstr("\"1-1?..\""));  // echoed, but not raw

  for (const auto& ref : {nowhere("1-"), nowhere("x"), UsbDeviceRef{}}) {
    const Status reset = backend_->reset(ref);
    ASSERT_FALSE(reset.ok());
    EXPECT_EQ(reset.error().kind, ErrorKind::kInvalid) << reset.error().message;
    const Status cycled = backend_->powerCycle(ref, 0ms);
    ASSERT_FALSE(cycled.ok());
    EXPECT_EQ(cycled.error().kind, ErrorKind::kInvalid) << cycled.error().message;
  }

  UsbDeviceRef disagreeing = nowhere("1-2.3");
  disagreeing.bus = 1;
  disagreeing.ports = {2, 4};
  const Status reset = backend_->reset(disagreeing);
  ASSERT_FALSE(reset.ok());
  EXPECT_EQ(reset.error().kind, ErrorKind::kInvalid) << reset.error().message;
}

TEST_F(LibusbBackendTest, ResetOfAnEmptyPortIsNotFound) {
  const bool usable = available();
  UsbDeviceRef by_path = nowhere("9-9.9");
  UsbDeviceRef by_ports;  // no port_path: bus + ports are used
  by_ports.bus = 9;
  by_ports.ports = {9, 9};
  for (const auto& ref : {by_path, by_ports}) {
    const Status reset = backend_->reset(ref);
    ASSERT_FALSE(reset.ok());
    if (!usable) {
      expectUnavailable(reset.error());
      continue;
    }
    EXPECT_EQ(reset.error().kind, ErrorKind::kNotFound) << reset.error().message;
    EXPECT_THAT(reset.error().message, HasSubstr("no USB device at port 9-9.9"));
  }
}

TEST_F(LibusbBackendTest, PowerCycleBehindAMissingHubIsNotFound) {
  const bool usable = available();
  const Status behind_hub = backend_->powerCycle(nowhere("9-9.9"), 0ms);
  const Status on_root_hub = backend_->powerCycle(nowhere("199-3"), 0ms);
  ASSERT_FALSE(behind_hub.ok());
  ASSERT_FALSE(on_root_hub.ok());
  if (!usable) {
    expectUnavailable(behind_hub.error());
    expectUnavailable(on_root_hub.error());
    return;
  }
  EXPECT_EQ(behind_hub.error().kind, ErrorKind::kNotFound) << behind_hub.error().message;
  EXPECT_THAT(behind_hub.error().message, HasSubstr("no hub 9-9 (the parent of port 9-9.9)"));
  EXPECT_EQ(on_root_hub.error().kind, ErrorKind::kNotFound) << on_root_hub.error().message;
  EXPECT_THAT(on_root_hub.error().message, HasSubstr("no root hub of bus 199 (the parent of port 199-3)"));
}

}  // namespace
}  // namespace phonefarm::phone
