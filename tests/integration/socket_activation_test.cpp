// Socket activation as systemd does it (phonefarm-agent.socket): the test
// binds and listens, then execs the real agent with the socket at fd 3,
// LISTEN_FDS=1 and LISTEN_PID. The agent must serve on that socket (it could
// not bind the port itself: the test's socket holds it), keep it away from
// the work (close-on-exec), and refuse to start when the socket's address
// differs from `listen`, naming both.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "tests/integration/agent_fixture.hpp"
#include "tests/support/free_port.hpp"

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;

// A listening TCP socket on 127.0.0.1, any free port.
int listeningSocket(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, SOMAXCONN) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::system_error(errno, std::generic_category(), "bind/listen");
  }
  port = ntohs(addr.sin_port);
  return fd;
}

// The fd flags line of /proc/PID/fdinfo/FD (octal).
long fdFlags(pid_t pid, int fd) {
  std::ifstream info("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
  std::string key;
  std::string value;
  while (info >> key >> value) {
    if (key == "flags:") return std::stol(value, nullptr, 8);
  }
  return -1;
}

class SocketActivation : public ::testing::Test {
 protected:
  void SetUp() override { writeFile(dir_.path() / "tokens", std::string("reader read ") + kReadToken + "\n", 0600); }
  void TearDown() override {
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  void writeConfig(const std::string& listen) {
    writeFile(dir_.path() / "agent.toml",
              "listen = \"" + listen + "\"\nstate_dir = \"" + (dir_.path() / "state").string() +
                  "\"\ntokens_file = \"" + (dir_.path() / "tokens").string() +
                  "\"\n[work]\nrun_as = \"phonefarm-test-no-such-user\"\nallowed_command_prefixes = [\"/usr/bin/\"]\n"
                  "[adb]\nserver = \"127.0.0.1:1\"\nadb_path = \"/bin/false\"\n",
              0600);
  }

  std::unique_ptr<AgentProcess> startActivated() {
    return std::make_unique<AgentProcess>(PHONEFARM_AGENT_BINARY,
                                          std::vector<std::string>{"--config", (dir_.path() / "agent.toml").string()},
                                          dir_.path(), AgentProcess::Env{}, dir_.path(), listen_fd_);
  }

  TempDir dir_{DirAccess::kTraversableByOthers};
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
};

TEST_F(SocketActivation, ServesOnThePassedSocket) {
  listen_fd_ = listeningSocket(port_);
  writeConfig("127.0.0.1:" + std::to_string(port_));
  auto agent = startActivated();
  EXPECT_EQ(agent->waitForListening(20s), port_) << agent->output();
  EXPECT_TRUE(agent->findLine("activated=yes")) << agent->output();
  ::close(std::exchange(listen_fd_, -1));  // from now on only the agent holds it
  HttpClient client("127.0.0.1", port_);
  client.setBearerToken(kReadToken);
  EXPECT_EQ(client.get("/healthz").status, 200);
  EXPECT_EQ(client.get("/processes").status, 200);
  // Children (the exec shim, the work) must not inherit the listener.
  const long flags = fdFlags(agent->pid(), 3);
  ASSERT_GE(flags, 0);
  EXPECT_NE(flags & 02000000, 0) << "fd 3 of the agent is not close-on-exec: flags " << std::oct << flags;
  EXPECT_EQ(agent->stop(SIGTERM, 10s), 0);
}

TEST_F(SocketActivation, RefusesASocketWhoseAddressDiffersFromListen) {
  listen_fd_ = listeningSocket(port_);
  const std::uint16_t other = freePort();
  writeConfig("127.0.0.1:" + std::to_string(other));
  auto agent = startActivated();
  const auto status = agent->waitExit(20s);
  ASSERT_TRUE(status.has_value()) << agent->output();
  EXPECT_NE(*status, 0);
  // The exit can be seen before the output reader has drained the pipe.
  EXPECT_TRUE(agent->waitForLine("127.0.0.1:" + std::to_string(port_), 10s)) << agent->output();
  const std::string out = agent->output();
  EXPECT_NE(out.find("127.0.0.1:" + std::to_string(other)), std::string::npos) << out;
  EXPECT_NE(out.find("127.0.0.1:" + std::to_string(port_)), std::string::npos) << out;
  EXPECT_EQ(out.find("http.listening"), std::string::npos) << out;
}

TEST_F(SocketActivation, BindsListenItselfWithoutAPassedSocket) {
  writeConfig("127.0.0.1:0");
  AgentProcess agent(PHONEFARM_AGENT_BINARY,
                     std::vector<std::string>{"--config", (dir_.path() / "agent.toml").string()}, dir_.path(),
                     AgentProcess::Env{}, dir_.path());
  const auto port = agent.waitForListening(20s);
  EXPECT_TRUE(agent.findLine("activated=no")) << agent.output();
  HttpClient client("127.0.0.1", port);
  EXPECT_EQ(client.get("/healthz").status, 200);
  EXPECT_EQ(agent.stop(SIGTERM, 10s), 0);
}

}  // namespace
}  // namespace phonefarm::testing
