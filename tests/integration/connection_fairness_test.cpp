// Fair connections against the real daemon: clients that connect and stay
// silent, or dribble a header one byte at a time, cannot lock out a client
// with a request to make (at http.max_connections the connection idle longest
// is closed to admit the new one), a new connection must complete its first
// header within http.first_request_timeout_seconds however it dribbles, and
// 401/403 answers close the connection.
#include <poll.h>
#include <sys/resource.h>

#include <atomic>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kHogs = 1000;
constexpr std::size_t kAgentMaxConnections = 512;  // the default

// The soft "Max open files" of a process, from /proc/PID/limits.
long openFilesLimit(pid_t pid) {
  std::ifstream limits("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(limits, line)) {
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream fields(line.substr(14));
      long soft = 0;
      fields >> soft;
      return soft;
    }
  }
  return -1;
}

// One value of the agent's /metrics, or -1.
double metric(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

// kHogs connections to the agent, half silent and half sending a request
// header one byte per 100 ms that never ends; each one the agent closes is
// opened again, so the pressure lasts as long as the hogs run.
class Hogs {
 public:
  explicit Hogs(std::uint16_t port) : port_(port), thread_([this] { run(); }) {}
  ~Hogs() {
    stop_ = true;
    thread_.join();
  }
  Hogs(const Hogs&) = delete;
  Hogs& operator=(const Hogs&) = delete;

  // True once all kHogs have connected and every dribbler sent a byte.
  bool waitFilled(std::chrono::milliseconds timeout) const {
    const auto until = Clock::now() + timeout;
    while (!filled_) {
      if (Clock::now() > until) return false;
      std::this_thread::yield();
    }
    return true;
  }
  std::uint64_t reconnects() const { return reconnects_; }

 private:
  struct Hog {
    std::optional<RawConnection> conn;
    bool dribbles = false;
  };

  void open(Hog& hog) {
    hog.conn.emplace("127.0.0.1", port_);
    if (hog.dribbles) hog.conn->trySendAll("GET /processes HTTP/1.1\r\nHost: x\r\n");
  }

  void run() {
    std::vector<Hog> hogs(kHogs);
    for (std::size_t i = 0; i < hogs.size(); ++i) {
      hogs[i].dribbles = i % 2 == 1;
      open(hogs[i]);
    }
    std::vector<pollfd> fds(hogs.size());
    auto last_byte = Clock::now();
    bool one_round = false;
    while (!stop_) {
      for (std::size_t i = 0; i < hogs.size(); ++i) fds[i] = pollfd{hogs[i].conn->fd(), POLLIN, 0};
      ::poll(fds.data(), fds.size(), 100);  // closes wake us; otherwise the next byte is due
      const bool byte_due = Clock::now() - last_byte >= 100ms;
      if (byte_due) last_byte = Clock::now();
      for (std::size_t i = 0; i < hogs.size(); ++i) {
        Hog& hog = hogs[i];
        bool closed = (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && hog.conn->peerClosed();
        if (!closed && hog.dribbles && byte_due) closed = !hog.conn->trySendAll("X");
        if (closed) {
          ++reconnects_;
          open(hog);
        }
      }
      if (byte_due && one_round) filled_ = true;
      one_round = one_round || byte_due;
    }
  }

  std::uint16_t port_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> filled_{false};
  std::atomic<std::uint64_t> reconnects_{0};
  std::thread thread_;
};

class ConnectionFairness : public AgentFixture {};

TEST_F(ConnectionFairness, AuthenticatedClientIsAnsweredWithinOneSecondWhileAThousandConnectionsHog) {
  // This process holds the hogs and the client: raise its own limit first.
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  const rlim_t needed = kHogs + 256;
  if (limit.rlim_cur < needed) {
    ASSERT_GE(limit.rlim_max, needed) << "the hard RLIMIT_NOFILE is too low for this test";
    limit.rlim_cur = needed;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0);
  }
  // The agent must be able to hold max_connections: otherwise accept() fails
  // before the cap and this would test the descriptor limit instead.
  EXPECT_GE(openFilesLimit(agent_->pid()), static_cast<long>(kAgentMaxConnections + 64));

  Hogs hogs(port_);
  ASSERT_TRUE(hogs.waitFilled(30s));

  std::chrono::milliseconds slowest{0};
  for (int round = 0; round < 10; ++round) {
    HttpClient client("127.0.0.1", port_);  // a new connection each time, as a scheduler after a restart
    client.setBearerToken(kReadToken);
    client.setTimeout(5s);
    const auto started = Clock::now();
    const auto res = client.get("/processes");
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    EXPECT_EQ(res.status, 200) << res.body;
    EXPECT_LT(took, 1s) << "round " << round;
    slowest = std::max(slowest, took);
  }
  RecordProperty("slowest_ms", static_cast<int>(slowest.count()));

  HttpClient client("127.0.0.1", port_);
  client.setBearerToken(kReadToken);
  const auto metrics = client.get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  // The hogs held the agent at its cap all along.
  EXPECT_GE(metric(metrics.body, "phonefarm_http_active_connections"), kAgentMaxConnections - 16.0);
  EXPECT_GT(metric(metrics.body, "phonefarm_http_connections_evicted_total"), 0);
  EXPECT_GT(hogs.reconnects(), 0u);
  std::cout << "slowest of 10 fresh authenticated requests among " << kHogs << " hogs: " << slowest.count()
            << " ms; hogs reconnected " << hogs.reconnects() << " times\n";
}

class FirstRequestTimeout : public AgentFixture {
 protected:
  std::string extraConfig() const override {
    return "[http]\nfirst_request_timeout_seconds = 1\nheader_timeout_seconds = 30\n";
  }
};

TEST_F(FirstRequestTimeout, DribblingTheFirstHeaderIsCutOffAtTheFirstRequestTimeout) {
  RawConnection dribbler("127.0.0.1", port_);
  RawConnection silent("127.0.0.1", port_);
  const auto started = Clock::now();
  dribbler.sendAll("GET /processes HTTP/1.1\r\n");
  bool closed = false;
  while (!closed && Clock::now() - started < 10s) {
    closed = !dribbler.trySendAll("X") || dribbler.waitClosed(100ms);
  }
  const auto took = Clock::now() - started;
  EXPECT_TRUE(closed);
  EXPECT_GE(took, 800ms);
  EXPECT_LT(took, 3s);  // not header_timeout_seconds (30), and not extended by the bytes
  EXPECT_TRUE(silent.waitClosed(3s));
}

// header_timeout_seconds (3), not first_request_timeout_seconds (1), governs
// a request after the first: a second header dribbled a byte every 100 ms is
// still open past the first-request timeout and cut off once the header
// timeout has passed, however it dribbles (idle_timeout, 60, would be later).
class LaterRequestTimeout : public AgentFixture {
 protected:
  std::string extraConfig() const override {
    return "[http]\nfirst_request_timeout_seconds = 1\nheader_timeout_seconds = 3\nidle_timeout_seconds = 60\n";
  }
};

TEST_F(LaterRequestTimeout, LaterRequestsHaveTheHeaderTimeout) {
  RawConnection conn("127.0.0.1", port_);
  conn.sendAll("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string buffer;
  ASSERT_EQ(conn.recvSome(buffer, 5s), RawConnection::Recv::kData);
  EXPECT_EQ(buffer.rfind("HTTP/1.1 200", 0), 0u) << buffer;
  const auto started = Clock::now();
  conn.sendAll("GET /healthz HTTP/1.1\r\n");  // a second header, dribbled and never finished
  bool closed = false;
  std::optional<Clock::duration> open_until;
  while (!closed && Clock::now() - started < 10s) {
    closed = !conn.trySendAll("X") || conn.waitClosed(100ms);
    if (!closed) open_until = Clock::now() - started;
  }
  const auto took = Clock::now() - started;
  ASSERT_TRUE(closed) << "still open 10 s into the second header";
  ASSERT_TRUE(open_until.has_value());
  EXPECT_GE(*open_until, 2s) << "closed at the first-request timeout, not the header timeout";
  EXPECT_GE(took, 2800ms);
  EXPECT_LT(took, 6s);  // header_timeout_seconds (3), not extended by the bytes
}

TEST_F(ConnectionFairness, UnauthorizedAndForbiddenAnswersCloseTheConnection) {
  struct Case {
    std::string request;
    const char* status_line;
  };
  const std::vector<Case> cases{
      {"GET /processes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-token-0123456789\r\n\r\n", "HTTP/1.1 401"},
      {std::string("POST /phones/phone_01/reset HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ") + kReadToken +
           "\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
       "HTTP/1.1 403"}};
  for (const auto& c : cases) {
    RawConnection conn("127.0.0.1", port_);
    conn.sendAll(c.request);
    std::string buffer;
    ASSERT_EQ(conn.recvSome(buffer, 5s), RawConnection::Recv::kData);
    EXPECT_EQ(buffer.rfind(c.status_line, 0), 0u) << buffer;
    EXPECT_TRUE(conn.waitClosed(2s)) << c.status_line;
  }
}

}  // namespace
}  // namespace phonefarm::testing
