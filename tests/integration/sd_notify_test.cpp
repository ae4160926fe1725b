// The daemon's sd_notify protocol as systemd sees it: the test plays the
// service manager with an AF_UNIX datagram socket named by NOTIFY_SOCKET and
// checks READY=1 (after recovery), WATCHDOG=1 every WATCHDOG_USEC/2 from the
// event loop, STATUS= lines, and STOPPING=1 on SIGTERM.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Message {
  Clock::time_point at;
  std::string line;  // one "KEY=value" assignment
};

class SdNotify : public AgentFixture {
 protected:
  void SetUp() override {
    // sd_watchdog_enabled() honours WATCHDOG_PID when set; the agent must not
    // inherit one from whoever runs the tests.
    ::unsetenv("WATCHDOG_PID");
    socket_path_ = dir_.path() / "notify.sock";
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0) << std::strerror(errno);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    ASSERT_LT(socket_path_.string().size(), sizeof addr.sun_path);
    std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    AgentFixture::SetUp();
  }

  void TearDown() override {
    AgentFixture::TearDown();
    if (fd_ >= 0) ::close(fd_);
  }

  AgentProcess::Env agentEnv() const override {
    AgentProcess::Env env{{"NOTIFY_SOCKET", socket_path_.string()}};
    if (watchdog_usec_) env.emplace_back("WATCHDOG_USEC", std::to_string(*watchdog_usec_));
    return env;
  }

  // Reads datagrams until `deadline`, or until a line equal to `until` arrives
  // (then returns early). Everything read is appended to messages_.
  bool readUntil(Clock::time_point deadline, const std::string& until = "") {
    char buf[4096];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0) return false;
      std::istringstream in(std::string(buf, static_cast<std::size_t>(n)));
      bool hit = false;
      for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        messages_.push_back({Clock::now(), line});
        if (!until.empty() && line == until) hit = true;
      }
      if (hit) return true;
    }
  }

  std::string transcript() const {
    std::string out;
    for (const auto& m : messages_) out += m.line + "\n";
    return out;
  }

  std::optional<std::uint64_t> watchdog_usec_ = 200000;
  std::filesystem::path socket_path_;
  int fd_ = -1;
  std::vector<Message> messages_;
};

TEST_F(SdNotify, ReadyWatchdogStatusAndStopping) {
  ASSERT_TRUE(readUntil(Clock::now() + 20s, "READY=1")) << transcript() << agent_->output();
  // READY=1 comes after recovery: the agent has logged it by now.
  EXPECT_TRUE(agent_->waitForLine("agent.ready", 5s)) << agent_->output();

  const auto ready_at = messages_.back().at;
  readUntil(ready_at + 1s);
  int pings = 0;
  for (const auto& m : messages_) {
    if (m.line == "WATCHDOG=1" && m.at >= ready_at) ++pings;
  }
  // Every 100 ms: about 10 in the second; at least 2 leaves room for a slow CI.
  EXPECT_GE(pings, 2) << transcript();

  std::optional<std::string> status;
  for (const auto& m : messages_) {
    if (m.line.rfind("STATUS=", 0) == 0) status = m.line;
  }
  ASSERT_TRUE(status.has_value()) << transcript();
  // Two configured phones, none reachable or busy, nothing executing.
  EXPECT_NE(status->find("phones ready "), std::string::npos) << *status;
  EXPECT_NE(status->find("/2,"), std::string::npos) << *status;
  EXPECT_NE(status->find("executing 0"), std::string::npos) << *status;

  agent_->kill(SIGTERM);
  EXPECT_TRUE(readUntil(Clock::now() + 10s, "STOPPING=1")) << transcript();
  EXPECT_EQ(agent_->waitExit(10s), 0) << agent_->output();
}

// Without WATCHDOG_USEC (no WatchdogSec= in the unit) the agent sends no
// WATCHDOG=1, but still READY=1 and STATUS=.
class SdNotifyNoWatchdog : public SdNotify {
 protected:
  void SetUp() override {
    watchdog_usec_.reset();
    ::unsetenv("WATCHDOG_USEC");
    SdNotify::SetUp();
  }
};

TEST_F(SdNotifyNoWatchdog, NoPingsWithoutWatchdogUsec) {
  ASSERT_TRUE(readUntil(Clock::now() + 20s, "READY=1")) << transcript() << agent_->output();
  readUntil(Clock::now() + 500ms);
  for (const auto& m : messages_) EXPECT_NE(m.line, "WATCHDOG=1") << transcript();
  bool status = false;
  for (const auto& m : messages_) status = status || m.line.rfind("STATUS=", 0) == 0;
  EXPECT_TRUE(status) << transcript();
}

}  // namespace
}  // namespace phonefarm::testing
