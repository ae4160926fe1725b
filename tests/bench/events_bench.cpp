// events_bench: GET /events under load. Starts phonefarm-agent (its work user
// does not exist, so submitted items stay queued: the load is the store and
// the event stream, not execution) and drives submits at a fixed rate
// (default 1000/s) for a while, twice: first with no stream open, then with
// S streams (default 32) open. Prints:
//  - event latency on the streams: from the submit's response (after its
//    commit: a lower bound of commit -> event) and from its request (an upper
//    bound), p50/p99 over every stream;
//  - the agent's CPU (utime+stime per wall second) in both phases and the
//    difference, and its RSS with the streams open versus without;
//  - whether every stream got every event (exit 1 if not).
//
//   events_bench [--rate 1000] [--seconds 10] [--streams 32] [--dir /var/tmp] [--agent PATH]
//   events_bench --smoke    # --rate 200 --seconds 2 --streams 4 (ctest, label "bench")
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/agent_process.hpp"
#include "tests/support/http_client.hpp"

namespace {

using phonefarm::testing::AgentProcess;
using phonefarm::testing::HttpClient;
using phonefarm::testing::RawConnection;
using Clock = std::chrono::steady_clock;
constexpr const char* kToken = "bench-token-0123456789abcdef";

struct Options {
  int rate = 1000;
  int seconds = 10;
  int streams = 32;
  std::string dir = "/var/tmp";
  std::string agent = PHONEFARM_AGENT_BINARY;
};

double cpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string f;
  long utime = 0;
  long stime = 0;
  for (int i = 3; i <= 15; ++i) {
    fields >> f;
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

long rssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size())))];
}

struct Timing {
  Clock::time_point sent;
  Clock::time_point answered;
};

// Submits `count` processes "<prefix>-<i>" at `rate`/s over 4 keep-alive
// clients; records when each was sent and answered.
void submitLoad(std::uint16_t port, const std::string& prefix, int rate, int count,
                std::map<std::string, Timing>& timings, std::mutex& mutex) {
  constexpr int kClients = 4;
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      HttpClient client("127.0.0.1", port);
      client.setBearerToken(kToken);
      for (int i = c; i < count; i += kClients) {
        const auto due = start + std::chrono::microseconds(static_cast<long>(1e6 * i / rate));
        std::this_thread::sleep_until(due);
        const std::string id = prefix + "-" + std::to_string(i);
        const std::string body = R"({"process_id":")" + id +
                                 R"(","phone_id":"phone_01","account_id":"a","queue_items":[{"queue_item_id":")" + id +
                                 R"(-q","command":["/usr/bin/true"]}]})";
        const auto sent = Clock::now();
        auto r = client.post("/processes", body);
        const auto answered = Clock::now();
        if (r.status != 201) std::fprintf(stderr, "submit %s: %d %s\n", id.c_str(), r.status, r.body.c_str());
        std::lock_guard lock(mutex);
        timings[id] = Timing{sent, answered};
      }
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--smoke") {
      o.rate = 200;
      o.seconds = 2;
      o.streams = 4;
    } else if (a == "--rate") {
      o.rate = std::stoi(next());
    } else if (a == "--seconds") {
      o.seconds = std::stoi(next());
    } else if (a == "--streams") {
      o.streams = std::stoi(next());
    } else if (a == "--dir") {
      o.dir = next();
    } else if (a == "--agent") {
      o.agent = next();
    } else {
      std::fprintf(stderr, "usage: events_bench [--rate N] [--seconds N] [--streams N] [--dir D] [--agent P]\n");
      return 2;
    }
  }
  std::string tmpl = o.dir + "/events-bench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror(("mkdtemp " + tmpl).c_str());
    return 2;
  }
  struct Dir {
    std::filesystem::path p;
    const std::filesystem::path& path() const { return p; }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  } dir{tmpl};
  // One token: schedule covers the submits and the streams' read.
  std::ofstream(dir.path() / "tokens") << "bench schedule " << kToken << "\n";
  std::filesystem::permissions(dir.path() / "tokens",
                               std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::replace);
  std::ofstream(dir.path() / "agent.toml")
      << "listen = \"127.0.0.1:0\"\nstate_dir = \"" << (dir.path() / "state").string() << "\"\ntokens_file = \""
      << (dir.path() / "tokens").string()
      << "\"\n[http]\nmax_event_streams = 1000\n[work]\nrun_as = \"phonefarm-bench-no-such-user\"\n"
         "allowed_command_prefixes = [\"/usr/bin/\"]\n[adb]\nserver = \"127.0.0.1:1\"\nadb_path = \"/bin/false\"\n"
         "[[phones]]\nid = \"phone_01\"\nserial = \"127.0.0.1:5555\"\n";
  AgentProcess agent(o.agent, {"--config", (dir.path() / "agent.toml").string()}, dir.path());
  const std::uint16_t port = agent.waitForListening(std::chrono::seconds(20));
  const int count = o.rate * o.seconds;

  std::mutex mutex;
  std::map<std::string, Timing> timings;
  // Phase 1: no stream.
  double cpu0 = cpuSeconds(agent.pid());
  auto t0 = Clock::now();
  submitLoad(port, "base", o.rate, count, timings, mutex);
  const double base_cpu = (cpuSeconds(agent.pid()) - cpu0) / std::chrono::duration<double>(Clock::now() - t0).count();
  const long base_rss = rssKb(agent.pid());

  // Phase 2: the streams, from now on.
  std::vector<RawConnection> conns;
  for (int s = 0; s < o.streams; ++s) {
    conns.emplace_back("127.0.0.1", port);
    conns.back().sendAll(std::string("GET /events HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer ") + kToken +
                         "\r\nAccept: text/event-stream\r\n\r\n");
  }
  std::vector<std::string> bufs(conns.size());
  auto events = std::make_unique<std::atomic<std::size_t>[]>(conns.size());
  std::vector<std::pair<std::string, Clock::time_point>> arrivals;  // process id, when (every stream)
  std::atomic<bool> reading{true};
  std::thread reader([&] {
    std::vector<pollfd> fds;
    for (auto& c : conns) fds.push_back(pollfd{c.fd(), POLLIN, 0});
    char chunk[65536];
    while (reading) {
      if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
      const auto now = Clock::now();
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if ((fds[i].revents & POLLIN) == 0) continue;
        const ssize_t n = ::recv(fds[i].fd, chunk, sizeof(chunk), 0);
        if (n <= 0) {
          fds[i].fd = -1;
          continue;
        }
        bufs[i].append(chunk, static_cast<std::size_t>(n));
        std::size_t pos = 0;
        for (;;) {
          const auto end = bufs[i].find("\n\n", pos);
          if (end == std::string::npos) break;
          const std::string_view frame(bufs[i].data() + pos, end - pos);
          pos = end + 2;
          if (frame.find("event: process.submitted") == std::string_view::npos) continue;
          const auto id = frame.find("\"process_id\":\"");
          if (id == std::string_view::npos) continue;
          const auto from = id + 14;
          ++events[i];
          arrivals.emplace_back(std::string(frame.substr(from, frame.find('"', from) - from)), now);
        }
        bufs[i].erase(0, pos);
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the streams are up
  cpu0 = cpuSeconds(agent.pid());
  t0 = Clock::now();
  submitLoad(port, "live", o.rate, count, timings, mutex);
  const double live_cpu = (cpuSeconds(agent.pid()) - cpu0) / std::chrono::duration<double>(Clock::now() - t0).count();
  const long live_rss = rssKb(agent.pid());
  // Every event reaches every stream within a deadline.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  auto complete = [&] {
    for (std::size_t i = 0; i < conns.size(); ++i) {
      if (events[i] < static_cast<std::size_t>(count)) return false;
    }
    return true;
  };
  while (!complete() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  reading = false;
  reader.join();

  std::vector<double> from_answer;
  std::vector<double> from_request;
  for (const auto& [id, at] : arrivals) {
    const auto& t = timings.at(id);
    from_answer.push_back(std::chrono::duration<double, std::milli>(at - t.answered).count());
    from_request.push_back(std::chrono::duration<double, std::milli>(at - t.sent).count());
  }
  std::printf("rate %d/s for %d s, %d streams, %zu events delivered (of %zu expected)\n", o.rate, o.seconds, o.streams,
              arrivals.size(), static_cast<std::size_t>(count) * conns.size());
  std::printf("event latency from the submit's response (lower bound of commit->event): p50 %.2f ms, p99 %.2f ms\n",
              percentile(from_answer, 50), percentile(from_answer, 99));
  std::printf("event latency from the submit's request (upper bound): p50 %.2f ms, p99 %.2f ms\n",
              percentile(from_request, 50), percentile(from_request, 99));
  std::printf("agent CPU: %.1f%% without streams, %.1f%% with %d streams (+%.1f%%)\n", base_cpu * 100, live_cpu * 100,
              o.streams, (live_cpu - base_cpu) * 100);
  std::printf("agent RSS: %ld KiB without streams, %ld KiB with (+%ld KiB)\n", base_rss, live_rss, live_rss - base_rss);
  agent.stop(SIGTERM, std::chrono::seconds(20));
  return complete() ? 0 : 1;
}
