// fake-adbd (tests/fakes/fake_adbd.cpp), the fake phone the integration tests
// plug into a real adb server: first its wire protocol spoken by hand (CNXN
// handshake, shell streams with OKAY flow control, unknown services,
// concurrent sessions, SIGTERM), then a private real adb server (`adb -P`)
// that connects to it, sees it as `device`, runs shell commands through it,
// counts a reconnect and loses it when it is killed ("unplugged").
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "tests/support/agent_process.hpp"
#include "tests/support/free_port.hpp"

extern char** environ;

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kFakeAdbd = PHONEFARM_FAKE_ADBD;

constexpr std::uint32_t kCnxn = 0x4e584e43;
constexpr std::uint32_t kOpen = 0x4e45504f;
constexpr std::uint32_t kOkay = 0x59414b4f;
constexpr std::uint32_t kClse = 0x45534c43;
constexpr std::uint32_t kWrte = 0x45545257;
constexpr std::uint32_t kVersion = 0x01000001;

// A deterministic, non-repeating-looking payload: chunks out of order or
// duplicated would not compare equal.
std::string pattern(std::size_t size) {
  std::string out;
  out.reserve(size);
  for (std::size_t i = 0; out.size() < size; ++i) out += std::to_string(i) + (i % 16 == 15 ? "\n" : " ");
  out.resize(size);
  return out;
}

struct Stats {
  unsigned long connections = 0;
  unsigned long handshakes = 0;
};

std::optional<Stats> readStats(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string connections;
  std::string handshakes;
  if (!(in >> connections >> handshakes)) return std::nullopt;
  if (connections.rfind("connections=", 0) != 0 || handshakes.rfind("handshakes=", 0) != 0) return std::nullopt;
  return Stats{std::stoul(connections.substr(12)), std::stoul(handshakes.substr(11))};
}

// Polls the stats file until `done` holds; returns the last value read.
std::optional<Stats> waitForStats(const std::filesystem::path& file, const std::function<bool(const Stats&)>& done,
                                  std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  std::optional<Stats> stats;
  for (;;) {
    stats = readStats(file);
    if ((stats && done(*stats)) || Clock::now() >= deadline) return stats;
    std::this_thread::sleep_for(20ms);
  }
}

std::string describe(const std::optional<Stats>& stats) {
  if (!stats) return "no stats";
  return "connections=" + std::to_string(stats->connections) + " handshakes=" + std::to_string(stats->handshakes);
}

// Starts fake-adbd on an ephemeral port and returns the port it printed.
std::uint16_t startFake(std::unique_ptr<AgentProcess>& fake, const std::vector<std::string>& args,
                        const std::filesystem::path& log_dir) {
  std::vector<std::string> all{"--port", "0"};
  all.insert(all.end(), args.begin(), args.end());
  fake = std::make_unique<AgentProcess>(kFakeAdbd, all, log_dir);
  constexpr std::string_view kPrefix = "fake-adbd listening port=";
  if (!fake->waitForLine(kPrefix, 10s)) throw std::runtime_error("fake-adbd did not start:\n" + fake->output());
  const std::string line = *fake->findLine(kPrefix);
  return static_cast<std::uint16_t>(std::stoul(line.substr(line.find(kPrefix) + kPrefix.size())));
}

// ---- the wire protocol by hand ---------------------------------------------

struct Packet {
  std::uint32_t command = 0;
  std::uint32_t arg0 = 0;
  std::uint32_t arg1 = 0;
  std::string payload;
};

std::string name(std::uint32_t command) {
  std::string out;
  for (int i = 0; i < 4; ++i) out += static_cast<char>(command >> (8 * i));
  return out;
}

std::ostream& operator<<(std::ostream& out, const Packet& p) {
  return out << name(p.command) << "(" << p.arg0 << ", " << p.arg1 << ", " << p.payload.size() << " bytes)";
}

void putU32(std::string& out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>(value >> (8 * i));
}

std::uint32_t getU32(const unsigned char* in) {
  return std::uint32_t{in[0]} | std::uint32_t{in[1]} << 8 | std::uint32_t{in[2]} << 16 | std::uint32_t{in[3]} << 24;
}

std::uint32_t byteSum(std::string_view data) {
  std::uint32_t sum = 0;
  for (const char c : data) sum += static_cast<unsigned char>(c);
  return sum;
}

// The host side of one ADB TCP session, written from the protocol text.
class WireClient {
 public:
  explicit WireClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::system_error(errno, std::generic_category(), "connect to fake-adbd");
    }
  }
  ~WireClient() { ::close(fd_); }
  WireClient(const WireClient&) = delete;
  WireClient& operator=(const WireClient&) = delete;

  void sendRaw(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::system_error(errno, std::generic_category(), "send");
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void send(std::uint32_t command, std::uint32_t arg0, std::uint32_t arg1, std::string_view payload = {}) {
    std::string message;
    putU32(message, command);
    putU32(message, arg0);
    putU32(message, arg1);
    putU32(message, static_cast<std::uint32_t>(payload.size()));
    putU32(message, byteSum(payload));
    putU32(message, command ^ 0xffffffffU);
    message.append(payload);
    sendRaw(message);
  }

  // The next message, or nullopt if none arrives within `timeout` (or the
  // fake closed the connection). Checks magic and data_check.
  std::optional<Packet> receive(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    std::array<unsigned char, 24> header{};
    if (!readExact(header.data(), header.size(), deadline)) return std::nullopt;
    Packet p{getU32(&header[0]), getU32(&header[4]), getU32(&header[8]), {}};
    const std::uint32_t length = getU32(&header[12]);
    EXPECT_EQ(getU32(&header[20]), p.command ^ 0xffffffffU) << "bad magic";
    p.payload.resize(length);
    if (length > 0 && !readExact(reinterpret_cast<unsigned char*>(p.payload.data()), length, deadline)) {
      ADD_FAILURE() << "truncated payload of " << name(p.command);
      return std::nullopt;
    }
    EXPECT_EQ(getU32(&header[16]), byteSum(p.payload)) << "bad data_check on " << p;
    return p;
  }

  // True once the fake has closed (or reset) the connection.
  bool waitClosed(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    char byte;
    for (;;) {
      pollfd pfd{fd_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) == 0) return false;
      const ssize_t n = ::recv(fd_, &byte, 1, 0);
      if (n == 0 || (n < 0 && errno != EINTR)) return true;
    }
  }

  // CNXN exchange; returns the device's CNXN.
  std::optional<Packet> handshake() {
    send(kCnxn, kVersion, 1024 * 1024, std::string_view("host::features=cmd\0", 19));
    return receive();
  }

  // Runs `shell:<command>` on stream `host_id`, acknowledging every WRTE, and
  // returns everything written before the device's CLSE. Fails the test on
  // anything unexpected, including a chunk larger than `max_chunk`.
  std::string shell(std::string_view service, std::uint32_t host_id, std::size_t max_chunk) {
    send(kOpen, host_id, 0, std::string(service) + '\0');
    const auto ready = receive();
    if (!ready || ready->command != kOkay || ready->arg1 != host_id || ready->arg0 == 0) {
      ADD_FAILURE() << "OPEN " << service << ": expected OKAY, got " << (ready ? *ready : Packet{});
      return {};
    }
    const std::uint32_t device_id = ready->arg0;
    std::string output;
    for (;;) {
      const auto p = receive();
      if (!p) {
        ADD_FAILURE() << "no CLSE for " << service << " after " << output.size() << " bytes";
        return output;
      }
      EXPECT_EQ(p->arg0, device_id) << *p;
      EXPECT_EQ(p->arg1, host_id) << *p;
      if (p->command == kClse) return output;
      if (p->command != kWrte) {
        ADD_FAILURE() << "unexpected " << *p;
        return output;
      }
      EXPECT_LE(p->payload.size(), max_chunk);
      output += p->payload;
      send(kOkay, host_id, device_id);
    }
  }

 private:
  bool readExact(unsigned char* out, std::size_t size, Clock::time_point deadline) {
    while (size > 0) {
      pollfd pfd{fd_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      const ssize_t n = ::recv(fd_, out, size, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      out += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }

  int fd_ = -1;
};

TEST(FakeAdbdWire, HandshakeShellFlowControlUnknownServicesAndSigterm) {
  TempDir dir;
  const auto stats_file = dir / "stats";
  const std::string big = pattern(10000);  // three 4 KiB chunks
  std::unique_ptr<AgentProcess> fake;
  const auto port = startFake(fake,
                              {"--shell", "echo-test=hello", "--shell", "big=" + big, "--shell", "empty=", "--stats",
                               stats_file.string(), "--max-payload", "4096"},
                              dir.path());
  const auto initial = readStats(stats_file);
  ASSERT_TRUE(initial) << "stats file missing at startup";
  EXPECT_EQ(initial->connections, 0u);

  WireClient first(port);
  const auto cnxn = first.handshake();
  ASSERT_TRUE(cnxn) << fake->output();
  EXPECT_EQ(cnxn->command, kCnxn) << *cnxn;
  EXPECT_EQ(cnxn->arg0, kVersion);
  EXPECT_EQ(cnxn->arg1, 4096u);  // --max-payload
  EXPECT_EQ(cnxn->payload.rfind("device::", 0), 0u) << cnxn->payload;
  EXPECT_NE(cnxn->payload.find("ro.product.model=FakePhone"), std::string::npos) << cnxn->payload;
  EXPECT_EQ(cnxn->payload.find("shell_v2"), std::string::npos) << "shell_v2 framing is not implemented";
  // Counted before the reply went out: no wait needed.
  const auto after_handshake = readStats(stats_file);
  ASSERT_TRUE(after_handshake);
  EXPECT_EQ(after_handshake->connections, 1u);
  EXPECT_EQ(after_handshake->handshakes, 1u);

  EXPECT_EQ(first.shell("shell:echo-test", 7, 4096), "hello");
  EXPECT_EQ(first.shell("shell:no-such-cmd --flag", 8, 4096), "fake-adbd: no-such-cmd --flag: not found\n");
  EXPECT_EQ(first.shell("shell:empty", 9, 4096), "");
  EXPECT_EQ(first.shell("shell,raw:echo-test", 10, 4096), "hello");  // options before ':' are stripped
  EXPECT_EQ(first.shell("shell:big", 11, 4096), big);

  // Flow control: after one WRTE the fake waits for OKAY. Host input on the
  // stream (WRTE) is acknowledged without releasing the next chunk.
  first.send(kOpen, 12, 0, "shell:big");
  const auto ready = first.receive();
  ASSERT_TRUE(ready && ready->command == kOkay) << (ready ? *ready : Packet{});
  const std::uint32_t device_id = ready->arg0;
  const auto chunk1 = first.receive();
  ASSERT_TRUE(chunk1 && chunk1->command == kWrte) << (chunk1 ? *chunk1 : Packet{});
  EXPECT_EQ(chunk1->payload, big.substr(0, 4096));
  const auto early = first.receive(300ms);
  EXPECT_FALSE(early) << "sent " << *early << " before the host's OKAY";
  first.send(kWrte, 12, device_id, "stdin bytes");
  const auto input_ack = first.receive();
  ASSERT_TRUE(input_ack) << "no OKAY for host WRTE";
  EXPECT_EQ(input_ack->command, kOkay) << *input_ack;
  EXPECT_EQ(input_ack->arg0, device_id);
  EXPECT_EQ(input_ack->arg1, 12u);
  first.send(kOkay, 12, device_id);
  const auto chunk2 = first.receive();
  ASSERT_TRUE(chunk2 && chunk2->command == kWrte) << (chunk2 ? *chunk2 : Packet{});
  EXPECT_EQ(chunk2->payload, big.substr(4096, 4096));
  first.send(kClse, 12, device_id);  // the host gives up: no more output
  const auto after_close = first.receive(300ms);
  EXPECT_FALSE(after_close) << "sent " << *after_close << " on a closed stream";

  // Unknown services: CLSE(0, host_id).
  first.send(kOpen, 13, 0, std::string_view("reboot:\0", 8));
  const auto refused = first.receive();
  ASSERT_TRUE(refused) << fake->output();
  EXPECT_EQ(refused->command, kClse) << *refused;
  EXPECT_EQ(refused->arg0, 0u);
  EXPECT_EQ(refused->arg1, 13u);

  // A second, concurrent session is independent of the first.
  WireClient second(port);
  ASSERT_TRUE(second.handshake());
  EXPECT_EQ(second.shell("shell:echo-test", 7, 4096), "hello");
  EXPECT_EQ(first.shell("shell:echo-test", 14, 4096), "hello");
  const auto stats = readStats(stats_file);
  EXPECT_TRUE(stats && stats->connections == 2 && stats->handshakes == 2) << describe(stats);

  // "Unplugged": SIGTERM closes every session and exits 0.
  EXPECT_EQ(fake->stop(SIGTERM, 5s), 0) << fake->output();
  EXPECT_TRUE(first.waitClosed(5s));
  EXPECT_TRUE(second.waitClosed(5s));
  EXPECT_TRUE(fake->waitForLine("disconnect #1", 5s)) << fake->output();
  EXPECT_TRUE(fake->waitForLine("disconnect #2", 5s)) << fake->output();
}

TEST(FakeAdbdWire, DropsMalformedMessagesAndIgnoresOpenBeforeHandshake) {
  TempDir dir;
  std::unique_ptr<AgentProcess> fake;
  const auto port = startFake(fake, {"--shell", "echo-test=hello"}, dir.path());

  WireClient early(port);
  early.send(kOpen, 1, 0, "shell:echo-test");
  const auto ignored = early.receive(300ms);
  EXPECT_FALSE(ignored) << "answered " << *ignored << " before CNXN";
  const auto cnxn = early.handshake();
  ASSERT_TRUE(cnxn && cnxn->command == kCnxn);
  EXPECT_EQ(early.shell("shell:echo-test", 2, 256 * 1024), "hello");

  WireClient garbage(port);
  garbage.sendRaw(std::string(24, 'x'));  // magic does not match
  EXPECT_TRUE(garbage.waitClosed(5s));
  EXPECT_TRUE(fake->running());
  EXPECT_EQ(fake->stop(SIGINT, 5s), 0) << fake->output();
}

TEST(FakeAdbdCli, RejectsBadArguments) {
  TempDir dir;
  for (const auto& args : std::vector<std::vector<std::string>>{{},
                                                                {"--port", "70000"},
                                                                {"--port", "0", "--shell", "no-equals-sign"},
                                                                {"--port", "0", "--frobnicate", "1"}}) {
    AgentProcess fake(kFakeAdbd, args, dir.path());
    EXPECT_EQ(fake.waitExit(10s), 2) << fake.output();
    EXPECT_TRUE(fake.waitForLine("usage: fake-adbd", 10s)) << fake.output();
  }
}

// ---- a real adb server ------------------------------------------------------

struct RunResult {
  int exit_code = -1;  // -1: did not exit in time (killed) or could not start
  std::string output;  // stdout and stderr
};

std::ostream& operator<<(std::ostream& out, const RunResult& r) {
  return out << "exit " << r.exit_code << ", output:\n" << r.output;
}

class AdbServerWithFakePhone : public ::testing::Test {
 protected:
  void SetUp() override {
    adb_ = std::getenv("PHONEFARM_ADB") != nullptr ? std::getenv("PHONEFARM_ADB") : "/usr/bin/adb";
    ASSERT_EQ(::access(adb_.c_str(), X_OK), 0) << adb_ << " not found: install the adb package (scripts/setup)";
    // A private server: its own port, and HOME/TMPDIR in the temp dir so the
    // adb key pair and the server log land there. No vendor keys, and none
    // of the variables that would point the client at another server.
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const std::string_view var(*entry);
      const std::string_view var_name = var.substr(0, var.find('='));
      if (var_name == "HOME" || var_name == "TMPDIR" || var_name == "ADB_VENDOR_KEYS" ||
          var_name == "ANDROID_SDK_HOME" || var_name == "ANDROID_USER_HOME" || var_name == "ANDROID_SERIAL" ||
          var_name == "ANDROID_ADB_SERVER_PORT" || var_name == "ANDROID_ADB_SERVER_ADDRESS" ||
          var_name == "ADB_SERVER_SOCKET" || var_name == "ADB_TRACE") {
        continue;
      }
      env_.emplace_back(var);
    }
    env_.push_back("HOME=" + dir_.path().string());
    env_.push_back("TMPDIR=" + dir_.path().string());
    server_port_ = freePort();
    server_attempted_ = true;
    const auto started = adb({"start-server"});
    ASSERT_EQ(started.exit_code, 0) << started;
    server_started_ = true;
  }

  // Always stops the private server, whatever the test did (even a failed
  // start-server may have left one behind).
  void TearDown() override {
    if (fake_ && fake_->running()) fake_->stop(SIGKILL, 5s);
    if (server_attempted_) {
      const auto killed = adb({"kill-server"});
      if (server_started_) {
        EXPECT_EQ(killed.exit_code, 0) << killed;
      }
    }
  }

  // Runs `adb -P <server port> args...` with the private environment; output
  // goes through a file, so a server the client forks cannot hold a pipe open.
  RunResult adb(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 30s) {
    std::vector<std::string> argv{adb_, "-P", std::to_string(server_port_)};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto output_file = dir_ / ("adb-" + std::to_string(runs_++) + ".out");
    std::vector<char*> argv_ptrs;
    for (auto& arg : argv) argv_ptrs.push_back(arg.data());
    argv_ptrs.push_back(nullptr);
    std::vector<char*> env_ptrs;
    for (auto& var : env_) env_ptrs.push_back(var.data());
    env_ptrs.push_back(nullptr);
    const int out = ::open(output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0) throw std::system_error(errno, std::generic_category(), "open");

    RunResult result;
    const pid_t pid = ::fork();
    if (pid == 0) {
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::dup2(in, STDIN_FILENO);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
      ::execve(argv_ptrs[0], argv_ptrs.data(), env_ptrs.data());
      ::_exit(127);
    }
    ::close(out);
    ::close(in);
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
    const auto deadline = Clock::now() + timeout;
    int status = 0;
    for (;;) {
      const pid_t done = ::waitpid(pid, &status, WNOHANG);
      if (done == pid) {
        result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (Clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ADD_FAILURE() << "adb " << args.front() << " did not finish within " << timeout.count() << " ms";
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    std::ifstream in_file(output_file, std::ios::binary);
    std::stringstream text;
    text << in_file.rdbuf();
    result.output = text.str();
    return result;
  }

  // The state `adb devices` reports for `serial` ("device", "offline", ...),
  // or "" if it is not listed.
  std::string state(const std::string& serial) {
    const auto devices = adb({"devices"});
    std::istringstream lines(devices.output);
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      std::string listed;
      std::string listed_state;
      if (fields >> listed >> listed_state && listed == serial) return listed_state;
    }
    return "";
  }

  // Re-runs `adb devices` every 50 ms until `done(state)`; returns the last state.
  std::string waitForState(const std::string& serial, const std::function<bool(const std::string&)>& done,
                           std::chrono::milliseconds timeout = 15s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const std::string current = state(serial);
      if (done(current) || Clock::now() >= deadline) return current;
      std::this_thread::sleep_for(50ms);
    }
  }

  // `adb connect`, then waits for state `device`; returns the time it took.
  std::chrono::milliseconds connect(const std::string& serial) {
    const auto start = Clock::now();
    const auto connected = adb({"connect", serial});
    const auto connect_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    EXPECT_EQ(connected.exit_code, 0) << connected;
    EXPECT_NE(connected.output.find("connected to " + serial), std::string::npos) << connected;
    const auto reached = waitForState(serial, [](const std::string& s) { return s == "device"; });
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    EXPECT_EQ(reached, "device") << "after " << elapsed.count() << " ms; fake-adbd:\n"
                                 << (fake_ ? fake_->output() : "");
    std::cout << "adb connect " << serial << ": command " << connect_ms.count() << " ms, state device after "
              << elapsed.count() << " ms\n";
    return elapsed;
  }

  TempDir dir_;
  std::string adb_;
  std::vector<std::string> env_;
  std::uint16_t server_port_ = 0;
  bool server_attempted_ = false;
  bool server_started_ = false;
  std::atomic<int> runs_{0};
  std::unique_ptr<AgentProcess> fake_;
};

TEST_F(AdbServerWithFakePhone, ConnectsRunsShellAndGoesAwayWhenUnplugged) {
  const auto stats_file = dir_ / "stats";
  const auto port = startFake(fake_, {"--shell", "echo-test=hello", "--stats", stats_file.string()}, dir_.path());
  const std::string serial = "127.0.0.1:" + std::to_string(port);

  const auto elapsed = connect(serial);
  ASSERT_FALSE(HasFailure());
  RecordProperty("connect_to_device_ms", static_cast<int>(elapsed.count()));

  const auto listed = adb({"devices", "-l"});
  EXPECT_NE(listed.output.find("model:FakePhone"), std::string::npos) << listed;

  const auto echo = adb({"-s", serial, "shell", "echo-test"});
  EXPECT_EQ(echo.exit_code, 0) << echo;
  EXPECT_EQ(echo.output, "hello");
  const auto unknown = adb({"-s", serial, "shell", "getprop", "ro.serialno"});
  EXPECT_EQ(unknown.output, "fake-adbd: getprop ro.serialno: not found\n") << unknown;

  const auto stats = waitForStats(stats_file, [](const Stats& s) { return s.handshakes >= 1; });
  EXPECT_TRUE(stats && stats->connections >= 1 && stats->handshakes >= 1) << describe(stats);

  // Unplug the phone: the server must notice within the deadline.
  const auto unplugged = Clock::now();
  EXPECT_EQ(fake_->stop(SIGTERM, 5s), 0) << fake_->output();
  const auto gone = waitForState(serial, [](const std::string& s) { return s != "device"; });
  EXPECT_NE(gone, "device");
  std::cout << "unplugged: state '" << gone << "' after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - unplugged).count() << " ms\n";
  const auto after = adb({"-s", serial, "shell", "echo-test"});
  EXPECT_NE(after.exit_code, 0) << after;
}

TEST_F(AdbServerWithFakePhone, CountsReconnectAndAnswersConcurrentAndLargeShells) {
  const auto stats_file = dir_ / "stats";
  const std::string big = pattern(100000);  // 25 WRTEs of 4 KiB, each waiting for the server's OKAY
  std::vector<std::string> args{"--stats", stats_file.string(), "--max-payload", "4096", "--shell", "big=" + big};
  constexpr int kParallel = 8;
  for (int i = 0; i < kParallel; ++i)
    args.insert(args.end(), {"--shell", "cmd " + std::to_string(i) + "=out " + std::to_string(i) + "\n"});
  const auto port = startFake(fake_, args, dir_.path());
  const std::string serial = "127.0.0.1:" + std::to_string(port);

  connect(serial);
  ASSERT_FALSE(HasFailure());
  const auto disconnected = adb({"disconnect", serial});
  EXPECT_EQ(disconnected.exit_code, 0) << disconnected;
  EXPECT_EQ(waitForState(serial, [](const std::string& s) { return s.empty(); }), "");
  connect(serial);
  ASSERT_FALSE(HasFailure());
  const auto stats = waitForStats(stats_file, [](const Stats& s) { return s.handshakes >= 2; });
  EXPECT_TRUE(stats && stats->connections == 2 && stats->handshakes == 2) << describe(stats);

  std::vector<RunResult> results(kParallel);
  std::vector<std::thread> threads;
  for (int i = 0; i < kParallel; ++i) {
    threads.emplace_back([&, i] { results[i] = adb({"-s", serial, "shell", "cmd", std::to_string(i)}); });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kParallel; ++i) {
    EXPECT_EQ(results[i].exit_code, 0) << results[i];
    EXPECT_EQ(results[i].output, "out " + std::to_string(i) + "\n");
  }

  const auto large = adb({"-s", serial, "shell", "big"});
  EXPECT_EQ(large.exit_code, 0) << large.exit_code;
  EXPECT_EQ(large.output.size(), big.size());
  EXPECT_TRUE(large.output == big) << "large output differs";
}

}  // namespace
}  // namespace phonefarm::testing
