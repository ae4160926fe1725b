// AdbClient, parseDeviceList, startAdbServer and DeviceTracker. Most tests
// talk to FakeAdbServer, an in-process host-protocol server scripted per test
// (one script per accepted connection), to pin the framing and every hostile
// answer. The RealAdbServer tests run the installed /usr/bin/adb on a private
// port with a private HOME (skipped when it is missing): the real server's
// answers, a TCP "device" (FakeAdbd, enough of adbd's wire protocol for
// CNXN and one shell stream), reconnect, and the tracker restarting a killed
// server. Nothing sleeps for state: every wait is on an event with a deadline.
#include "agent/phone/adb_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/phone/adb_device.hpp"
#include "agent/phone/adb_host_connection.hpp"
#include "agent/phone/adb_server_launcher.hpp"
#include "agent/phone/device_tracker.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/temp_dir.hpp"

namespace phonefarm::phone {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kWait = 10s;  // upper bound for anything a test waits on

std::string hex4(std::size_t n) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "%04zx", n);
  return buffer;
}
std::string frame(std::string_view payload) { return hex4(payload.size()) + std::string(payload); }
std::string okay(std::string_view payload) { return "OKAY" + frame(payload); }
std::string fail(std::string_view message) { return "FAIL" + frame(message); }

long long elapsedMs(SteadyClock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - since).count();
}

// A TCP listener on 127.0.0.1:0 that accepts and hands each connection to a
// stop-aware callback on its own thread, one connection at a time.
class Listener {
 public:
  explicit Listener(std::function<void(int fd)> on_accept) : on_accept_(std::move(on_accept)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), length) != 0 || ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ADD_FAILURE() << "listener: " << std::strerror(errno);
    }
    port_ = ntohs(address.sin_port);
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    thread_ = std::thread([this] { loop(); });
  }
  ~Listener() {
    const std::uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one);
    thread_.join();
    ::close(listen_fd_);
    ::close(stop_fd_);
  }
  std::uint16_t port() const { return port_; }
  int stopFd() const { return stop_fd_; }

 private:
  void loop() {
    for (;;) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents != 0) return;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      on_accept_(fd);
      ::close(fd);
    }
  }

  std::function<void(int)> on_accept_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// One accepted connection as a script sees it. Every read is bounded by
// kWait and by the server's stop, so a failing test cannot hang.
class FakeConnection {
 public:
  FakeConnection(int fd, int stop_fd) : fd_(fd), stop_fd_(stop_fd) {}

  // Reads n bytes; nullopt on EOF, error, stop or kWait.
  std::optional<std::string> read(std::size_t n) {
    std::string out;
    const auto deadline = SteadyClock::now() + kWait;
    while (out.size() < n) {
      pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
      if (left.count() <= 0 || ::poll(fds, 2, static_cast<int>(left.count())) <= 0 || fds[1].revents != 0) {
        return std::nullopt;
      }
      char buffer[4096];
      const ssize_t got = ::recv(fd_, buffer, std::min(sizeof buffer, n - out.size()), 0);
      if (got <= 0) return std::nullopt;
      out.append(buffer, static_cast<std::size_t>(got));
    }
    return out;
  }
  // One host-protocol request (4 hex digits + service); "" if none came.
  std::string readRequest() {
    auto length = read(4);
    if (!length) return "";
    auto body = read(std::stoul(*length, nullptr, 16));
    return body.value_or("");
  }
  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  // Waits (kWait at most) for the client to close; true if it did.
  bool waitForClientClose() {
    const auto deadline = SteadyClock::now() + kWait;
    for (;;) {
      pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
      if (left.count() <= 0 || ::poll(fds, 2, static_cast<int>(left.count())) <= 0 || fds[1].revents != 0) {
        return false;
      }
      char buffer[256];
      if (::recv(fd_, buffer, sizeof buffer, 0) <= 0) return true;
    }
  }

 private:
  int fd_;
  int stop_fd_;
};

// The scripted host-protocol server: the Nth accepted connection runs the
// Nth script; connections beyond the scripts are closed at once.
class FakeAdbServer {
 public:
  using Script = std::function<void(FakeConnection&)>;

  FakeAdbServer()
      : listener_([this](int fd) {
          Script script;
          {
            std::lock_guard lock(mutex_);
            ++accepted_;
            if (!scripts_.empty()) {
              script = std::move(scripts_.front());
              scripts_.pop_front();
            }
          }
          cv_.notify_all();
          FakeConnection connection(fd, listener_.stopFd());
          if (script) script(connection);
        }) {}

  void add(Script script) {
    std::lock_guard lock(mutex_);
    scripts_.push_back(std::move(script));
  }
  // The answer to the tracker's host:version before each subscription.
  void addVersion(std::string version = "0029") {
    add([version](FakeConnection& c) {
      EXPECT_EQ(c.readRequest(), "host:version");
      c.send(okay(version));
    });
  }
  AdbEndpoint endpoint() const { return AdbEndpoint{"127.0.0.1", listener_.port()}; }
  int accepted() const {
    std::lock_guard lock(mutex_);
    return accepted_;
  }
  // Waits (kWait at most) until n connections were accepted.
  bool waitForAccepted(int n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, kWait, [&] { return accepted_ >= n; });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Script> scripts_;
  int accepted_ = 0;
  Listener listener_;  // last: its thread runs the lambda above, which uses the members before it
};

// A port where nothing listens: bound, never listening, so connect() is
// refused and no one else can take the port while the test runs.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&address), length), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length), 0);
    port_ = ntohs(address.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  AdbEndpoint endpoint() const { return AdbEndpoint{"127.0.0.1", port_}; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// An executable /bin/sh script named `name` in `dir`.
std::string writeScript(const testing::TempDir& dir, const std::string& name, const std::string& body) {
  const auto file = dir / name;
  testing::writeFile(file, "#!/bin/sh\n" + body + "\n", 0700);
  return file.string();
}

// What a DeviceTracker reported, in order, with waits on it.
class TrackerLog {
 public:
  void update(std::vector<AdbDevice> devices) {
    {
      std::lock_guard lock(mutex_);
      events_.push_back("update");
      lists_.push_back(std::move(devices));
    }
    cv_.notify_all();
  }
  void lost(std::string reason) {
    {
      std::lock_guard lock(mutex_);
      events_.push_back("lost");
      reasons_.push_back(std::move(reason));
    }
    cv_.notify_all();
  }
  // Waits (kWait at most) until pred(events, lists) holds.
  bool waitUntil(const std::function<bool()>& pred) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, kWait, pred);
  }
  bool waitForEvents(std::size_t n) {
    return waitUntil([&] { return events_.size() >= n; });
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::vector<std::vector<AdbDevice>> lists() const {
    std::lock_guard lock(mutex_);
    return lists_;
  }
  std::vector<std::string> reasons() const {
    std::lock_guard lock(mutex_);
    return reasons_;
  }

  // For waitUntil predicates (called with the lock held).
  const std::vector<std::string>& eventsLocked() const { return events_; }
  const std::vector<std::vector<AdbDevice>>& listsLocked() const { return lists_; }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::vector<std::vector<AdbDevice>> lists_;
  std::vector<std::string> reasons_;
};

DeviceTracker makeTracker(DeviceTrackerOptions options, TrackerLog& log) {
  return DeviceTracker(
      std::move(options), [&log](std::vector<AdbDevice> devices) { log.update(std::move(devices)); },
      [&log](std::string reason) { log.lost(std::move(reason)); });
}

DeviceTrackerOptions fastOptions(AdbEndpoint endpoint) {
  DeviceTrackerOptions options;
  options.endpoint = std::move(endpoint);
  options.start_server = false;
  options.min_backoff = 10ms;
  options.max_backoff = 50ms;
  options.expected_version = "0029";  // /usr/bin/adb 1.0.41's, so the real server of the last tests is ours
  return options;
}

// ---------------------------------------------------------------------------
// parseDeviceList

TEST(ParseDeviceListTest, ReadsTheLongListing) {
  const auto devices = parseDeviceList(
      "R58M123ABC             device usb:1-1.4 product:beyond1lte model:SM_G973F device:beyond1 transport_id:3\n"
      "192.168.1.20:5555      offline product:sdk model:Pixel_4 device:generic transport_id:12\n"
      "0123456789ABCDEF       unauthorized usb:1-1.2 transport_id:4\n"
      "emulator-5554\tdevice\n");
  ASSERT_EQ(devices.size(), 4u);
  EXPECT_EQ(devices[0].serial, "R58M123ABC");
  EXPECT_EQ(devices[0].state, "device");
  EXPECT_EQ(devices[0].props, (std::map<std::string, std::string>{{"usb", "1-1.4"},
                                                                  {"product", "beyond1lte"},
                                                                  {"model", "SM_G973F"},
                                                                  {"device", "beyond1"},
                                                                  {"transport_id", "3"}}));
  EXPECT_EQ(devices[1].serial, "192.168.1.20:5555");
  EXPECT_EQ(devices[1].state, "offline");
  EXPECT_EQ(devices[1].props.at("transport_id"), "12");
  EXPECT_EQ(devices[2].state, "unauthorized");
  EXPECT_EQ(devices[3].serial, "emulator-5554");  // the short listing: tab-separated
  EXPECT_EQ(devices[3].state, "device");
  EXPECT_TRUE(devices[3].props.empty());
}

TEST(ParseDeviceListTest, KeepsMultiWordStatesAndThePlaceholderSerial) {
  const auto devices = parseDeviceList(
      "R58M1 no permissions (missing udev rules? user is in the plugdev group); see "
      "[http://developer.android.com/tools/device.html] usb:1-1.3 transport_id:7\r\n"
      "(no serial number)     device usb:2-1 transport_id:9\n");
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].state,
            "no permissions (missing udev rules? user is in the plugdev group); see "
            "[http://developer.android.com/tools/device.html]");
  EXPECT_EQ(devices[0].props.at("usb"), "1-1.3");
  EXPECT_EQ(devices[1].serial, "(no serial number)");
  EXPECT_EQ(devices[1].props.at("transport_id"), "9");
}

TEST(ParseDeviceListTest, SkipsMalformedLinesAndFields) {
  std::string payload;
  payload += "\n\n   \n";                                                 // blank
  payload += "lonely-serial\n";                                           // no state
  payload += "SER1 12345\n";                                              // state is not a word
  payload += std::string("SER\x01X device\n", 13);                        // control byte
  payload += "SER\xc3\xa9 device\n";                                      // non-ASCII serial
  payload += std::string(300, 'S') + " device\n";                         // serial too long
  payload += "LONG device " + std::string(kMaxAdbLineBytes, 'x') + "\n";  // line too long
  payload += std::string("NUL\0 device\n", 12);                           // NUL
  payload += "GOOD1 device usb:1-1 BAD:upper :novalue key: product:p\xff model:m\n";
  payload += "GOOD2 offline";  // last line without newline
  const auto devices = parseDeviceList(payload);
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].serial, "GOOD1");
  EXPECT_EQ(devices[0].props, (std::map<std::string, std::string>{{"usb", "1-1"}, {"model", "m"}}));
  EXPECT_EQ(devices[1].serial, "GOOD2");
  EXPECT_EQ(devices[1].state, "offline");
}

TEST(ParseDeviceListTest, CapsDevicesAndProps) {
  std::string payload;
  for (int i = 0; i < 2000; ++i) payload += "S" + std::to_string(i) + " device\n";
  EXPECT_EQ(parseDeviceList(payload).size(), kMaxAdbDevices);

  std::string line = "S device";  // 100 distinct well-formed keys: ka, kb, ... kz, kab, ...
  for (int i = 0; i < 100; ++i) {
    line +=
        " k" + std::string(1, static_cast<char>('a' + i % 26)) + std::string(1, static_cast<char>('a' + i / 26)) + ":v";
  }
  const auto devices = parseDeviceList(line);
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].props.size(), kMaxAdbProps);
  EXPECT_TRUE(parseDeviceList(std::string(100000, '\n')).empty());
}

// ---------------------------------------------------------------------------
// AdbClient against the fake server

TEST(AdbClientTest, VersionSendsAFramedRequestAndReadsThePayload) {
  std::string raw_header;  // before the fake, whose script writes it
  FakeAdbServer fake;
  fake.add([&](FakeConnection& c) {
    raw_header = c.read(4).value_or("");
    const auto body = c.read(12).value_or("");
    EXPECT_EQ(body, "host:version");
    c.send(okay("0029"));
  });
  AdbClient client(fake.endpoint());
  auto version = client.version(2s);
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_EQ(*version, "0029");
  EXPECT_EQ(raw_header, "000c");
}

TEST(AdbClientTest, FailCarriesTheServersTextAndKind) {
  FakeAdbServer fake;
  fake.add([](FakeConnection& c) {
    EXPECT_EQ(c.readRequest(), "host:transport:R58M");
    c.send(fail("device 'R58M' not found"));
  });
  fake.add([](FakeConnection& c) {
    EXPECT_EQ(c.readRequest(), "host:transport:R58M");
    c.send(fail("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set"));
  });
  AdbClient client(fake.endpoint());
  auto missing = client.shell("R58M", "true", 2s);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(missing.error().message, "adb shell on R58M: device 'R58M' not found");
  auto unauthorized = client.shell("R58M", "true", 2s);
  ASSERT_FALSE(unauthorized.ok());
  EXPECT_EQ(unauthorized.error().kind, ErrorKind::kUnavailable);
  EXPECT_EQ(unauthorized.error().message,
            "adb shell on R58M: device unauthorized. | This adb server's $ADB_VENDOR_KEYS is not set");
}

TEST(AdbClientTest, DevicesParsesTheListAndDropsGarbageLines) {
  FakeAdbServer fake;
  fake.add([](FakeConnection& c) {
    EXPECT_EQ(c.readRequest(), "host:devices-l");
    c.send(okay("R58M device usb:1-1.4 transport_id:3\n\x01\x02garbage\nonly-a-serial\nX offline\n"));
  });
  AdbClient client(fake.endpoint());
  auto devices = client.devices(2s);
  ASSERT_TRUE(devices.ok()) << devices.error().message;
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ((*devices)[0].props.at("usb"), "1-1.4");
  EXPECT_EQ((*devices)[1].serial, "X");
}

TEST(AdbClientTest, RejectsHostileFraming) {
  struct Case {
    std::string answer;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"OKAYzz12", "adb devices: malformed length 'zz12' from the adb server (want 4 hex digits)"},
      {"OKAY 0x1", "adb devices: malformed length ' 0x1' from the adb server (want 4 hex digits)"},
      {"OKAY 040" + std::string(0x40, 'x'),  // what strtoul would take
       "adb devices: malformed length ' 040' from the adb server (want 4 hex digits)"},
      {"OKAY-001", "adb devices: malformed length '-001' from the adb server (want 4 hex digits)"},
      {"OKAY0040" + std::string(10, 'x'),
       "adb devices: adb server closed the connection after 10 of 64 bytes of the payload"},
      {"OKAY00", "adb devices: adb server closed the connection after 2 of 4 bytes of the length"},
      {"HELO", "adb devices: unexpected status 'HELO' from the adb server"},
      {"", "adb devices: adb server closed the connection before the status"},
      {"FAIL00",
       "adb devices: FAIL without a readable message: adb server closed the connection after 2 of 4 "
       "bytes of the length"},
  };
  FakeAdbServer fake;
  for (const auto& c : cases) {
    fake.add([answer = c.answer](FakeConnection& conn) {
      conn.readRequest();
      conn.send(answer);
    });
  }
  AdbClient client(fake.endpoint());
  for (const auto& c : cases) {
    auto devices = client.devices(2s);
    ASSERT_FALSE(devices.ok()) << c.answer;
    EXPECT_EQ(devices.error().kind, ErrorKind::kUnavailable) << c.answer;
    EXPECT_EQ(devices.error().message, c.error);
  }
}

TEST(AdbClientTest, PayloadsOverTheCapAreRefusedBeforeReading) {
  FakeAdbServer fake;
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("OKAY0100" + std::string(0x100, '0'));  // a version is a few bytes
  });
  AdbClient client(fake.endpoint());
  auto version = client.version(2s);
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(version.error().message, "adb version: adb server announced 256 bytes; the limit here is 64");
}

TEST(AdbClientTest, ConnectAndDisconnectReturnTheServersMessage) {
  FakeAdbServer fake;
  fake.add([](FakeConnection& c) {
    EXPECT_EQ(c.readRequest(), "host:connect:10.0.0.5:5555");
    c.send(okay("connected to 10.0.0.5:5555"));
  });
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send(okay("already connected to 10.0.0.5:5555"));
  });
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send(okay("failed to connect to '10.0.0.5:5555': Connection refused"));
  });
  fake.add([](FakeConnection& c) {
    EXPECT_EQ(c.readRequest(), "host:disconnect:10.0.0.5:5555");
    c.send(okay("disconnected 10.0.0.5:5555"));
  });
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send(fail("no such device '10.0.0.5:5555'"));
  });
  AdbClient client(fake.endpoint());
  auto connected = client.connect("10.0.0.5:5555", 2s);
  ASSERT_TRUE(connected.ok()) << connected.error().message;
  EXPECT_EQ(*connected, "connected to 10.0.0.5:5555");
  auto again = client.connect("10.0.0.5:5555", 2s);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, "already connected to 10.0.0.5:5555");
  auto refused = client.connect("10.0.0.5:5555", 2s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kUnavailable);
  EXPECT_EQ(refused.error().message,
            "adb connect 10.0.0.5:5555: failed to connect to '10.0.0.5:5555': Connection refused");
  auto disconnected = client.disconnect("10.0.0.5:5555", 2s);
  ASSERT_TRUE(disconnected.ok());
  EXPECT_EQ(*disconnected, "disconnected 10.0.0.5:5555");
  auto unknown = client.disconnect("10.0.0.5:5555", 2s);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(unknown.error().message, "adb disconnect 10.0.0.5:5555: no such device '10.0.0.5:5555'");
}

TEST(AdbClientTest, ReconnectJudgesTheOkayMessage) {
  FakeAdbServer fake;
  fake.add([](FakeConnection& c) {
    EXPECT_EQ(c.readRequest(), "host-serial:R58M:reconnect");
    c.send(okay("reconnecting R58M [device]\n"));
  });
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send(okay("device 'R58M' not found"));  // what adb really answers: OKAY
  });
  AdbClient client(fake.endpoint());
  auto kicked = client.reconnect("R58M", 2s);
  EXPECT_TRUE(kicked.ok()) << kicked.error().message;
  auto missing = client.reconnect("R58M", 2s);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(missing.error().message, "adb reconnect R58M: device 'R58M' not found");
}

TEST(AdbClientTest, MalformedArgumentsAreRefusedWithoutContactingTheServer) {
  FakeAdbServer fake;
  AdbClient client(fake.endpoint());
  EXPECT_EQ(client.reconnect("", 1s).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(client.reconnect("R58M:reconnect\nhost:kill", 1s).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(client.shell("R 58", "true", 1s).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(client.shell("R58M", "", 1s).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(client.connect("a b:5555", 1s).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(client.disconnect("", 1s).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(client.reconnect(std::string(300, 'x'), 1s).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(fake.accepted(), 0);
  auto bad_host = AdbClient(AdbEndpoint{"adb.example", 5037}).version(1s);
  ASSERT_FALSE(bad_host.ok());
  EXPECT_EQ(bad_host.error().kind, ErrorKind::kInvalid);
}

TEST(AdbClientTest, ConnectionRefusedMeansTheServerIsNotRunning) {
  RefusingPort nobody;
  AdbClient client(nobody.endpoint());
  const auto started = SteadyClock::now();
  auto version = client.version(2s);
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(version.error().kind, ErrorKind::kUnavailable);
  EXPECT_EQ(version.error().message, "adb version: adb server not running at 127.0.0.1:" +
                                         std::to_string(nobody.endpoint().port) + " (connection refused)");
  EXPECT_LT(elapsedMs(started), 1000);
}

TEST(AdbClientTest, ASilentServerCostsTheTimeoutAndNoMore) {
  FakeAdbServer fake;
  // Never answers the request; then answers OKAY but never the length; then
  // sends part of a payload and stalls.
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.waitForClientClose();
  });
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("OKAY");
    c.waitForClientClose();
  });
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("OKAY0010abc");
    c.waitForClientClose();
  });
  AdbClient client(fake.endpoint());
  for (const std::string what : {"the status", "the length", "the payload"}) {
    const auto started = SteadyClock::now();
    auto devices = client.devices(300ms);
    const auto took = elapsedMs(started);
    ASSERT_FALSE(devices.ok());
    EXPECT_EQ(devices.error().kind, ErrorKind::kUnavailable);
    EXPECT_EQ(devices.error().message, "adb devices: timed out after 300 ms waiting for " + what);
    EXPECT_GE(took, 300);
    EXPECT_LT(took, 1300);
  }
}

TEST(AdbClientTest, ShellSwitchesTransportAndReadsUntilEof) {
  std::vector<std::string> requests;  // before the fake, whose script writes it
  FakeAdbServer fake;
  fake.add([&](FakeConnection& c) {
    requests.push_back(c.readRequest());
    c.send("OKAY");
    requests.push_back(c.readRequest());
    c.send("OKAY");
    c.send("line one\n");
    c.send(std::string(100000, 'z'));  // more than one read's worth
    c.send("\nend");
  });
  AdbClient client(fake.endpoint());
  auto output = client.shell("R58M", "getprop sys.boot_completed; echo \"$?\"", 2s);
  ASSERT_TRUE(output.ok()) << output.error().message;
  EXPECT_EQ(*output, "line one\n" + std::string(100000, 'z') + "\nend");
  EXPECT_EQ(requests,
            (std::vector<std::string>{"host:transport:R58M", "shell:getprop sys.boot_completed; echo \"$?\""}));
}

TEST(AdbClientTest, ShellOutputBeyondTheCapIsAnError) {
  FakeAdbServer fake;
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("OKAY");
    c.readRequest();
    c.send("OKAY" + std::string(64, 'x'));
    c.waitForClientClose();
  });
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("OKAY");
    c.readRequest();
    c.send("OKAY" + std::string(64, 'x'));  // exactly the cap, then EOF: fine
  });
  AdbClient client(fake.endpoint());
  auto over = client.shell("R58M", "cat big", 2s, 63);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().message, "adb shell on R58M: output exceeds the limit of 63 bytes");
  auto exact = client.shell("R58M", "cat big", 2s, 64);
  ASSERT_TRUE(exact.ok()) << exact.error().message;
  EXPECT_EQ(exact->size(), 64u);
}

TEST(AdbClientTest, ShellThatNeverEndsTimesOut) {
  FakeAdbServer fake;
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("OKAY");
    c.readRequest();
    c.send("OKAYpartial");
    c.waitForClientClose();
  });
  AdbClient client(fake.endpoint());
  const auto started = SteadyClock::now();
  auto output = client.shell("R58M", "logcat", 300ms);
  ASSERT_FALSE(output.ok());
  EXPECT_EQ(output.error().message,
            "adb shell on R58M: timed out after 300 ms waiting for the end of the output (7 bytes so far)");
  EXPECT_LT(elapsedMs(started), 1300);
}

// ---------------------------------------------------------------------------
// startAdbServer with stand-in binaries

TEST(StartAdbServerTest, ReportsAMissingBinary) {
  auto status = startAdbServer("/nonexistent/adb", AdbEndpoint{}, 2s);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(status.error().message,
            "adb start-server on port 5037: cannot run /nonexistent/adb: No such file or directory");
}

TEST(StartAdbServerTest, PassesArgumentsAndEnvironmentAndCapturesOutputOnFailure) {
  testing::TempDir dir;
  const auto adb = writeScript(
      dir, "adb", "echo \"args: $*\"; echo \"HOME=$HOME fds=$(ls /proc/self/fd | tr '\\n' ' ')\" >&2; exit 3");
  const int leaked = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC: the child must still not get it
  ASSERT_GT(leaked, 2);
  auto status = startAdbServer(adb, AdbEndpoint{"127.0.0.1", 5123}, 5s, {"HOME=/tmp/adb-home-x"});
  ::close(leaked);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, ErrorKind::kUnavailable);
  // ls lists stdio and its own directory fd (3): nothing else was inherited.
  EXPECT_EQ(status.error().message,
            "adb start-server on port 5123: adb exited with code 3; output: args: -P 5123 start-server | "
            "HOME=/tmp/adb-home-x fds=0 1 2 3");
}

TEST(StartAdbServerTest, SucceedsWhenAdbExitsZero) {
  testing::TempDir dir;
  EXPECT_TRUE(startAdbServer(writeScript(dir, "adb", "exit 0"), AdbEndpoint{}, 5s).ok());
}

TEST(StartAdbServerTest, KillsAHungChildAtTheTimeout) {
  testing::TempDir dir;
  const auto adb = writeScript(dir, "adb", "echo starting; exec sleep 30");
  const auto started = SteadyClock::now();
  auto status = startAdbServer(adb, AdbEndpoint{"127.0.0.1", 5124}, 300ms);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().message,
            "adb start-server on port 5124: timed out after 300 ms waiting for it; output: starting");
  EXPECT_LT(elapsedMs(started), 2000);
}

TEST(AdbBinaryVersionTest, ReadsTheVersionAdbPrints) {
  EXPECT_EQ(parseAdbVersionOutput("Android Debug Bridge version 1.0.41\nVersion 29.0.6-debian\n"), "0029");
  EXPECT_EQ(parseAdbVersionOutput("Android Debug Bridge version 1.0.39\n"), "0027");
  EXPECT_EQ(parseAdbVersionOutput("Android Debug Bridge version 2.0.41\n"), std::nullopt);
  EXPECT_EQ(parseAdbVersionOutput("Android Debug Bridge version 1.0.\n"), std::nullopt);
  EXPECT_EQ(parseAdbVersionOutput("Android Debug Bridge version 1.0.65536\n"), std::nullopt);
  EXPECT_EQ(parseAdbVersionOutput(""), std::nullopt);

  testing::TempDir dir;
  auto v = adbBinaryVersion(
      writeScript(dir, "adb", "[ \"$1\" = version ] && echo 'Android Debug Bridge version 1.0.32'"), 5s);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(*v, "0020");
  auto none = adbBinaryVersion(writeScript(dir, "other", "echo hello"), 5s);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no \"Android Debug Bridge version 1.0.N\" in its output: hello"),
            std::string::npos)
      << none.error().message;
  EXPECT_EQ(adbBinaryVersion("/nonexistent/adb", 5s).error().kind, ErrorKind::kNotFound);
}

// ---------------------------------------------------------------------------
// DeviceTracker against the fake server

TEST(DeviceTrackerTest, DeliversEveryListThenResubscribesAfterTheStreamBreaks) {
  TrackerLog log;  // before the fake: its scripts wait on it
  FakeAdbServer fake;
  fake.addVersion();
  fake.add([&](FakeConnection& c) {
    EXPECT_EQ(c.readRequest(), "host:track-devices-l");
    c.send("OKAY" + frame("R58M device usb:1-1 transport_id:1\n"));
    ASSERT_TRUE(log.waitForEvents(1));
    c.send(frame("R58M offline usb:1-1 transport_id:1\nS2 device transport_id:2\n"));
    ASSERT_TRUE(log.waitForEvents(2));
    // Closing: the server died.
  });
  fake.addVersion();
  fake.add([&](FakeConnection& c) {
    EXPECT_EQ(c.readRequest(), "host:track-devices-l");
    c.send("OKAY" + frame(""));
    c.waitForClientClose();
  });
  auto tracker = makeTracker(fastOptions(fake.endpoint()), log);
  tracker.start();
  ASSERT_TRUE(log.waitForEvents(4));
  ASSERT_EQ(log.events(), (std::vector<std::string>{"update", "update", "lost", "update"}));
  const auto lists = log.lists();
  ASSERT_EQ(lists.size(), 3u);
  ASSERT_EQ(lists[0].size(), 1u);
  EXPECT_EQ(lists[0][0].state, "device");
  ASSERT_EQ(lists[1].size(), 2u);
  EXPECT_EQ(lists[1][0].state, "offline");
  EXPECT_EQ(lists[1][1].serial, "S2");
  EXPECT_TRUE(lists[2].empty());
  EXPECT_EQ(log.reasons(), (std::vector<std::string>{"adb server closed the connection before the length"}));
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.subscriptions, 2u);
  EXPECT_EQ(stats.updates, 3u);
  EXPECT_EQ(stats.disconnects, 1u);
  EXPECT_EQ(stats.server_starts, 0u);
  const auto stopping = SteadyClock::now();
  tracker.stop();
  EXPECT_LT(elapsedMs(stopping), 500);
}

TEST(DeviceTrackerTest, AMalformedListBreaksTheStreamAndIsNotDelivered) {
  FakeAdbServer fake;
  TrackerLog log;
  fake.addVersion();
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("OKAY" + frame("A device\n") + "zzzzgarbage");
    c.waitForClientClose();
  });
  fake.addVersion();
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("FAIL" + frame("unknown host service"));
  });
  fake.addVersion();
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("OKAY" + frame("B device\n"));
    c.waitForClientClose();
  });
  auto tracker = makeTracker(fastOptions(fake.endpoint()), log);
  tracker.start();
  ASSERT_TRUE(log.waitForEvents(3));
  ASSERT_EQ(log.events(), (std::vector<std::string>{"update", "lost", "update"}));
  EXPECT_EQ(log.reasons(),
            (std::vector<std::string>{"malformed length 'zzzz' from the adb server (want 4 hex digits)"}));
  const auto lists = log.lists();
  ASSERT_EQ(lists.size(), 2u);
  ASSERT_EQ(lists[1].size(), 1u);
  EXPECT_EQ(lists[1][0].serial, "B");
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.subscriptions, 2u);  // the FAIL in between is one more failure of the same outage
  EXPECT_EQ(stats.disconnects, 1u);
  tracker.stop();
}

TEST(DeviceTrackerTest, StopIsPromptWhileFollowingAndWhileBackingOff) {
  {
    FakeAdbServer fake;
    TrackerLog log;
    fake.addVersion();
    fake.add([](FakeConnection& c) {
      c.readRequest();
      c.send("OKAY" + frame(""));
      c.waitForClientClose();
    });
    auto tracker = makeTracker(fastOptions(fake.endpoint()), log);
    tracker.start();
    ASSERT_TRUE(log.waitForEvents(1));
    const auto stopping = SteadyClock::now();
    tracker.stop();
    EXPECT_LT(elapsedMs(stopping), 500);
    tracker.stop();  // idempotent
  }
  {
    RefusingPort nobody;
    TrackerLog log;
    auto options = fastOptions(nobody.endpoint());
    options.min_backoff = options.max_backoff = 60s;
    auto tracker = makeTracker(options, log);
    tracker.start();
    ASSERT_TRUE(log.waitForEvents(1));
    ASSERT_EQ(log.events(), std::vector<std::string>{"lost"});
    EXPECT_EQ(log.reasons()[0], "adb server not running at 127.0.0.1:" + std::to_string(nobody.endpoint().port) +
                                    " (connection refused)");
    const auto stopping = SteadyClock::now();
    tracker.stop();
    EXPECT_LT(elapsedMs(stopping), 500);
    EXPECT_EQ(tracker.stats().disconnects, 1u);  // reported once, however many retries
  }
}

TEST(DeviceTrackerTest, StartsTheServerWhenRefusedAndReportsAFailedStart) {
  RefusingPort nobody;
  testing::TempDir dir;
  TrackerLog log;
  auto options = fastOptions(nobody.endpoint());
  options.start_server = true;
  options.adb_path = writeScript(dir, "adb", "echo \"cannot bind $2\" >&2; exit 1");
  auto tracker = makeTracker(options, log);
  tracker.start();
  ASSERT_TRUE(log.waitForEvents(1));
  ASSERT_EQ(log.events(), std::vector<std::string>{"lost"});
  const auto port = std::to_string(nobody.endpoint().port);
  EXPECT_EQ(log.reasons()[0], "adb server not running at 127.0.0.1:" + port +
                                  " (connection refused); adb start-server on port " + port +
                                  ": adb exited with code 1; output: cannot bind " + port);
  tracker.stop();
  const auto stats = tracker.stats();
  EXPECT_GE(stats.server_start_failures, 1u);
  EXPECT_EQ(stats.server_starts, 0u);
}

TEST(DeviceTrackerTest, StopKillsAHangingServerStart) {
  RefusingPort nobody;
  testing::TempDir dir;
  const auto fifo = dir.path() / "started";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const int started_fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(started_fd, 0);
  TrackerLog log;
  auto options = fastOptions(nobody.endpoint());
  options.start_server = true;
  options.server_start_timeout = 60s;
  options.adb_path = writeScript(dir, "adb", "echo started > '" + fifo.string() + "'; exec sleep 60");
  auto tracker = makeTracker(options, log);
  tracker.start();
  pollfd ready{started_fd, POLLIN, 0};
  ASSERT_EQ(::poll(&ready, 1, static_cast<int>(std::chrono::milliseconds(kWait).count())), 1);
  ::close(started_fd);
  const auto stopping = SteadyClock::now();
  tracker.stop();
  EXPECT_LT(elapsedMs(stopping), 1000);
  EXPECT_TRUE(log.events().empty());  // stopping is not an outage
  EXPECT_EQ(tracker.stats().server_start_failures, 0u);
}

TEST(DeviceTrackerTest, AServerOfAnotherVersionIsReportedFollowedAndLeftRunning) {
  TrackerLog log;
  FakeAdbServer fake;
  fake.addVersion("0020");
  fake.add([](FakeConnection& c) {
    EXPECT_EQ(c.readRequest(), "host:track-devices-l");  // never host:kill
    c.send("OKAY" + frame("R58M device\n"));
    c.waitForClientClose();
  });
  testing::TempDir dir;
  auto options = fastOptions(fake.endpoint());
  options.start_server = true;  // it must not be used either: the port is not free
  options.adb_path = writeScript(dir, "adb", "touch '" + (dir.path() / "ran").string() + "'; exit 1");
  auto tracker = makeTracker(options, log);
  tracker.start();
  ASSERT_TRUE(log.waitForEvents(1));
  EXPECT_EQ(log.events(), std::vector<std::string>{"update"});
  const auto state = tracker.serverState();
  EXPECT_EQ(state.fault, AdbServerFault::kForeignVersion);
  EXPECT_EQ(state.server_version, "0020");
  EXPECT_EQ(state.expected_version, "0029");
  EXPECT_EQ(state.detail, "the adb server at 127.0.0.1:" + std::to_string(fake.endpoint().port) +
                              " is version 0020, the agent's adb (" + options.adb_path +
                              ") is 0029: left running (adb.replace_foreign_server = false); an adb client of the "
                              "agent's version would kill it");
  tracker.stop();
  EXPECT_EQ(fake.accepted(), 2);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "ran"));
  EXPECT_EQ(tracker.stats().server_replacements, 0u);
}

TEST(DeviceTrackerTest, APortHogIsReportedAndRetriedWithBackoffNeverStarted) {
  TrackerLog log;
  FakeAdbServer fake;  // beyond the script, every connection is closed at once
  fake.add([](FakeConnection& c) {
    c.readRequest();
    c.send("SSH-2.0-OpenSSH_9.2p1\r\n");
  });
  testing::TempDir dir;
  auto options = fastOptions(fake.endpoint());
  options.start_server = true;
  options.adb_path = writeScript(dir, "adb", "touch '" + (dir.path() / "ran").string() + "'; exit 1");
  auto tracker = makeTracker(options, log);
  const auto started = SteadyClock::now();
  tracker.start();
  ASSERT_TRUE(log.waitForEvents(1));
  EXPECT_EQ(log.events(), std::vector<std::string>{"lost"});
  const auto port = std::to_string(fake.endpoint().port);
  EXPECT_EQ(log.reasons()[0], "something that is not an adb server holds 127.0.0.1:" + port +
                                  " (host:version: unexpected status 'SSH-' from the adb server); retrying with "
                                  "back-off");
  auto state = tracker.serverState();
  EXPECT_EQ(state.fault, AdbServerFault::kPortHog);
  EXPECT_EQ(state.detail, log.reasons()[0]);
  // Back-off 10, 20, 40, 50, 50 ms between the six attempts: at least 170 ms.
  ASSERT_TRUE(fake.waitForAccepted(6));
  EXPECT_GE(elapsedMs(started), 160);
  tracker.stop();
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "ran"));
  EXPECT_EQ(tracker.stats().disconnects, 1u);  // one outage, however many attempts
}

// ---------------------------------------------------------------------------
// Against the real adb server

constexpr const char* kAdb = "/usr/bin/adb";

// Runs adb with `args` and the environment overrides; returns its exit code.
int runAdb(const std::vector<std::string>& args, const std::vector<std::string>& env_overrides) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    if (entry.rfind("HOME=", 0) != 0) env.push_back(entry);
  }
  env.insert(env.end(), env_overrides.begin(), env_overrides.end());
  std::vector<std::string> argv_storage{kAdb};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, kAdb, &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Enough of adbd's wire protocol, over TCP, for the real server to list it as
// a "device" (answers CNXN, no AUTH) and to run one shell:<cmd> stream, whose
// output is "ran: <cmd>\n". Records whether the server closed a connection.
class FakeAdbd {
 public:
  static constexpr std::uint32_t kCnxn = 0x4e584e43, kOpen = 0x4e45504f, kOkay = 0x59414b4f, kWrte = 0x45545257,
                                 kClse = 0x45534c43;

  FakeAdbd()
      : listener_([this](int fd) {
          serve(fd);
          {
            std::lock_guard lock(mutex_);
            ++closed_;
          }
          cv_.notify_all();
        }) {}
  std::string serial() const { return "127.0.0.1:" + std::to_string(listener_.port()); }
  bool waitForClosed(int n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, kWait, [&] { return closed_ >= n; });
  }

 private:
  static std::string packet(std::uint32_t command, std::uint32_t arg0, std::uint32_t arg1, std::string_view data) {
    std::uint32_t sum = 0;
    for (const char c : data) sum += static_cast<unsigned char>(c);
    const std::uint32_t header[6] = {
        command, arg0, arg1, static_cast<std::uint32_t>(data.size()), sum, command ^ 0xffffffffu};
    std::string out(reinterpret_cast<const char*>(header), sizeof header);  // little-endian hosts only
    return out + std::string(data);
  }

  void serve(int fd) {
    FakeConnection c(fd, listener_.stopFd());
    for (;;) {
      auto raw = c.read(24);
      if (!raw) return;
      std::uint32_t header[6];
      std::memcpy(header, raw->data(), sizeof header);
      std::string data;
      if (header[3] > 0) {
        auto payload = c.read(header[3]);
        if (!payload) return;
        data = *payload;
      }
      if (header[0] == kCnxn) {
        c.send(packet(kCnxn, 0x01000000, 256 * 1024,
                      "device::ro.product.name=pf_fake;ro.product.model=PhonefarmFake;ro.product.device=pf;"));
      } else if (header[0] == kOpen) {
        const std::uint32_t remote = header[1];
        std::string service = data.substr(0, data.find('\0'));
        if (service.rfind("shell:", 0) != 0) {
          c.send(packet(kClse, 0, remote, ""));
          continue;
        }
        c.send(packet(kOkay, 1, remote, ""));
        c.send(packet(kWrte, 1, remote, "ran: " + service.substr(6) + "\n"));
        pending_close_ = remote;
      } else if (header[0] == kOkay && pending_close_) {
        c.send(packet(kClse, 1, *pending_close_, ""));  // the write was acknowledged: end the stream
        pending_close_.reset();
      }
    }
  }

  std::optional<std::uint32_t> pending_close_;  // listener thread only
  std::mutex mutex_;
  std::condition_variable cv_;
  int closed_ = 0;
  Listener listener_;  // last: its thread uses the members above
};

class RealAdbServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kAdb, X_OK), 0) << kAdb << " is not installed (scripts/setup installs the adb package)";
    endpoint_ = AdbEndpoint{"127.0.0.1", testing::freePort()};
    env_ = {"HOME=" + home_.path().string()};
    auto started = startAdbServer(kAdb, endpoint_, 30s, env_);
    ASSERT_TRUE(started.ok()) << started.error().message;
    started_ = true;
  }
  void TearDown() override {
    // Also kills a server the tracker restarted (trackers are stopped by now).
    if (started_) runAdb({"-P", std::to_string(endpoint_.port), "kill-server"}, env_);
  }

  testing::TempDir home_;
  AdbEndpoint endpoint_;
  std::vector<std::string> env_;
  bool started_ = false;
};

bool isHex4(const std::string& text) {
  return text.size() == 4 && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

TEST_F(RealAdbServerTest, AnswersVersionDevicesAndFailures) {
  AdbClient client(endpoint_);
  auto version = client.version(5s);
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_TRUE(isHex4(*version)) << *version;
  auto devices = client.devices(5s);
  ASSERT_TRUE(devices.ok()) << devices.error().message;  // whatever this host has attached
  auto refused = client.connect("127.0.0.1:1", 15s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kUnavailable);
  EXPECT_NE(refused.error().message.find("adb connect 127.0.0.1:1: failed to connect to"), std::string::npos)
      << refused.error().message;
  auto kick = client.reconnect("phonefarm-no-such-serial", 5s);
  ASSERT_FALSE(kick.ok());
  EXPECT_EQ(kick.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(kick.error().message,
            "adb reconnect phonefarm-no-such-serial: device 'phonefarm-no-such-serial' not found");
  auto shell = client.shell("phonefarm-no-such-serial", "true", 5s);
  ASSERT_FALSE(shell.ok());
  EXPECT_EQ(shell.error().kind, ErrorKind::kNotFound);
  auto disconnect = client.disconnect("127.0.0.1:1", 5s);
  ASSERT_FALSE(disconnect.ok());
  EXPECT_EQ(disconnect.error().kind, ErrorKind::kNotFound);
}

TEST_F(RealAdbServerTest, TcpDeviceConnectShellReconnect) {
  FakeAdbd adbd;
  const auto serial = adbd.serial();
  TrackerLog log;
  auto options = fastOptions(endpoint_);
  auto tracker = makeTracker(options, log);
  tracker.start();
  auto listed = [&](std::string_view state) {
    return log.waitUntil([&] {
      const auto& lists = log.listsLocked();
      if (lists.empty()) return false;
      for (const auto& d : lists.back()) {
        if (d.serial == serial) return d.state == state;
      }
      return state.empty();  // "" = absent
    });
  };
  AdbClient client(endpoint_);
  auto connected = client.connect(serial, 15s);
  ASSERT_TRUE(connected.ok()) << connected.error().message;
  EXPECT_EQ(*connected, "connected to " + serial);
  ASSERT_TRUE(listed("device"));
  auto devices = client.devices(5s);
  ASSERT_TRUE(devices.ok());
  const auto it =
      std::find_if(devices->begin(), devices->end(), [&](const AdbDevice& d) { return d.serial == serial; });
  ASSERT_NE(it, devices->end());
  EXPECT_EQ(it->props.at("product"), "pf_fake");
  EXPECT_EQ(it->props.at("model"), "PhonefarmFake");
  EXPECT_TRUE(it->props.count("transport_id"));

  auto output = client.shell(serial, "echo hi", 10s);
  ASSERT_TRUE(output.ok()) << output.error().message;
  EXPECT_EQ(*output, "ran: echo hi\n");

  // The host-side kick: the server drops the TCP connection and the
  // transport; adb 29 does not re-dial a kicked TCP device by itself.
  ASSERT_TRUE(client.reconnect(serial, 5s).ok());
  EXPECT_TRUE(adbd.waitForClosed(1));
  ASSERT_TRUE(listed(""));
  auto again = client.connect(serial, 15s);
  ASSERT_TRUE(again.ok()) << again.error().message;
  ASSERT_TRUE(listed("device"));
  auto disconnected = client.disconnect(serial, 5s);
  ASSERT_TRUE(disconnected.ok()) << disconnected.error().message;
  EXPECT_EQ(*disconnected, "disconnected " + serial);
  ASSERT_TRUE(listed(""));
  tracker.stop();
}

TEST_F(RealAdbServerTest, TrackerRestartsAKilledServer) {
  TrackerLog log;
  auto options = fastOptions(endpoint_);
  options.start_server = true;
  options.adb_path = kAdb;
  options.adb_env = env_;
  options.max_backoff = 500ms;
  auto tracker = makeTracker(options, log);
  tracker.start();
  ASSERT_TRUE(log.waitForEvents(1));
  ASSERT_EQ(log.events()[0], "update");  // the initial list (empty here, or this host's devices)

  ASSERT_EQ(runAdb({"-P", std::to_string(endpoint_.port), "kill-server"}, env_), 0);
  ASSERT_TRUE(log.waitUntil([&] {
    const auto& events = log.eventsLocked();
    const auto lost = std::find(events.begin(), events.end(), "lost");
    return lost != events.end() && std::find(lost, events.end(), "update") != events.end();
  })) << "no list after the server was killed";
  ASSERT_FALSE(log.reasons().empty());
  EXPECT_EQ(log.reasons()[0], "adb server closed the connection before the length");
  const auto stats = tracker.stats();
  EXPECT_GE(stats.server_starts, 1u);
  EXPECT_GE(stats.subscriptions, 2u);
  EXPECT_GE(stats.disconnects, 1u);
  tracker.stop();
  AdbClient client(endpoint_);
  EXPECT_TRUE(client.version(5s).ok());  // the restarted server is the one TearDown kills
}

}  // namespace
}  // namespace phonefarm::phone
