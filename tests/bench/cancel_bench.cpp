// cancel_bench: durable cancel throughput of the real agent. Per run it
// starts phonefarm-agent on a fresh state dir (on a real disk, so every
// commit is fsync'd), submits N single-item processes, then cancels all of
// them over K concurrent keep-alive connections and prints cancels/s, p50/p99
// latency and the agent's RSS; after R runs, the medians. Any answer other
// than 201 (submit) or 200 (cancel) fails the run (exit 1).
//
//   cancel_bench [-n 20000] [-c 64] [-r 3] [--dir /var/tmp] [--agent PATH]
//   cancel_bench --smoke     # -n 300 -c 8 -r 1: the same path in a second (ctest, label "bench")
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/bench/load_client.hpp"

extern char** environ;

namespace {

using phonefarm::bench::LoadResult;
using phonefarm::bench::percentile;
using phonefarm::bench::runLoad;

constexpr const char* kToken = "bench-token-0123456789abcdef";

struct Options {
  std::size_t n = 20000;
  std::size_t connections = 64;
  int runs = 3;
  std::string dir = "/var/tmp";
  std::string agent = PHONEFARM_AGENT_BINARY;
};

struct Agent {
  pid_t pid = -1;
  std::uint16_t port = 0;
  std::thread reader;
};

void writeFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

Agent startAgent(const Options& o, const std::string& dir) {
  writeFile(dir + "/tokens", std::string("bench schedule ") + kToken + "\n");
  ::chmod((dir + "/tokens").c_str(), 0600);
  writeFile(dir + "/agent.toml", "listen = \"127.0.0.1:0\"\nstate_dir = \"" + dir + "/state\"\ntokens_file = \"" + dir +
                                     "/tokens\"\n[http]\nmax_connections = 1024\n"
                                     // No such user: nothing executes, every process stays queued (cancel path only).
                                     "[work]\nrun_as = \"phonefarm-bench-no-such-user\"\n"
                                     "allowed_command_prefixes = [\"/usr/bin/\"]\n"
                                     "[[phones]]\nid = \"phone_01\"\nserial = \"bench-1\"\n");
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  const std::string config = dir + "/agent.toml";
  char* argv[] = {const_cast<char*>(o.agent.c_str()), const_cast<char*>("--config"), const_cast<char*>(config.c_str()),
                  nullptr};
  Agent agent;
  if (posix_spawn(&agent.pid, o.agent.c_str(), &actions, nullptr, argv, environ) != 0) {
    throw std::runtime_error("cannot start " + o.agent);
  }
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  FILE* err = ::fdopen(fds[0], "r");
  char line[4096];
  while (std::fgets(line, sizeof line, err) != nullptr) {
    if (const char* addr = std::strstr(line, "http.listening addr=")) {
      agent.port = static_cast<std::uint16_t>(std::atoi(std::strrchr(addr, ':') + 1));
      break;
    }
  }
  if (agent.port == 0) throw std::runtime_error("agent did not start; see its stderr");
  // Keep draining the agent's log into a file so it never blocks on stderr.
  agent.reader = std::thread([err, path = dir + "/agent.log"] {
    std::ofstream log(path);
    char buf[4096];
    while (std::fgets(buf, sizeof buf, err) != nullptr) log << buf;
    std::fclose(err);
  });
  return agent;
}

long rssKb(pid_t pid, const char* field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field));
  }
  return 0;
}

std::string request(const std::string& method, const std::string& target, const std::string& body) {
  std::ostringstream r;
  r << method << " " << target << " HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer " << kToken
    << "\r\nContent-Type: application/json\r\nContent-Length: " << body.size() << "\r\n\r\n"
    << body;
  return r.str();
}

std::string pid(std::size_t i) { return "bench-" + std::to_string(i); }

void check(const LoadResult& r, int expected, const char* what) {
  const auto bad = std::count_if(r.statuses.begin(), r.statuses.end(), [&](int s) { return s != expected; });
  if (bad != 0) throw std::runtime_error(std::string(what) + ": " + std::to_string(bad) + " unexpected statuses");
}

struct RunResult {
  double rate, p50_ms, p99_ms;
  long rss_kb, hwm_kb;
};

RunResult runOnce(const Options& o, int run) {
  char tmpl[4096];
  std::snprintf(tmpl, sizeof tmpl, "%s/cancel-bench-XXXXXX", o.dir.c_str());
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp in " + o.dir);
  const std::string dir = tmpl;
  Agent agent = startAgent(o, dir);
  auto submit = runLoad("127.0.0.1", agent.port, o.connections, o.n, [](std::size_t i) {
    return request("POST", "/processes",
                   R"({"process_id":")" + pid(i) +
                       R"(","phone_id":"phone_01","account_id":"acc","requested_by":{"system":"bench"},)"
                       R"("queue_items":[{"command":["/usr/bin/true"]}]})");
  });
  check(submit, 201, "submit");
  auto cancel = runLoad("127.0.0.1", agent.port, o.connections, o.n, [](std::size_t i) {
    return request("POST", "/processes/" + pid(i) + "/cancel",
                   R"({"reason":"bench","strategy":"soft_then_force","force_after_seconds":10,)"
                   R"("requested_by":{"system":"bench","user":"b@example.com","metadata":{}}})");
  });
  check(cancel, 200, "cancel");
  RunResult r{static_cast<double>(o.n) / cancel.seconds, percentile(cancel.latencies_us, 50) / 1000,
              percentile(cancel.latencies_us, 99) / 1000, rssKb(agent.pid, "VmRSS:"), rssKb(agent.pid, "VmHWM:")};
  std::printf("run %d: submit %.0f/s | cancel %.0f/s  p50 %.2f ms  p99 %.2f ms | agent RSS %ld KiB (peak %ld KiB)\n",
              run, static_cast<double>(o.n) / submit.seconds, r.rate, r.p50_ms, r.p99_ms, r.rss_kb, r.hwm_kb);
  ::kill(agent.pid, SIGTERM);
  int status = 0;
  ::waitpid(agent.pid, &status, 0);
  agent.reader.join();
  std::ifstream log(dir + "/agent.log");
  for (std::string line; std::getline(log, line);) {
    if (const auto at = line.find("store.stats "); at != std::string::npos) {
      std::printf("       %s (submits, cancels and reads together)\n", line.c_str() + at);
    }
  }
  std::filesystem::remove_all(dir);
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  const char* usage = "usage: cancel_bench [--smoke] [-n N] [-c K] [-r RUNS] [--dir DIR] [--agent PATH]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--smoke") {
      o.n = 300;
      o.connections = 8;
      o.runs = 1;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s", usage);
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "-n")
      o.n = std::stoul(value);
    else if (flag == "-c")
      o.connections = std::stoul(value);
    else if (flag == "-r")
      o.runs = std::stoi(value);
    else if (flag == "--dir")
      o.dir = value;
    else if (flag == "--agent")
      o.agent = value;
    else {
      std::fprintf(stderr, "%s", usage);
      return 2;
    }
  }
  try {
    std::printf("cancel_bench: %zu processes, %zu connections, %d runs, state in %s\n", o.n, o.connections, o.runs,
                o.dir.c_str());
    std::vector<double> rates, p50s, p99s, rss;
    for (int run = 1; run <= o.runs; ++run) {
      auto r = runOnce(o, run);
      rates.push_back(r.rate);
      p50s.push_back(r.p50_ms);
      p99s.push_back(r.p99_ms);
      rss.push_back(static_cast<double>(r.hwm_kb));
    }
    std::printf("median: %.0f cancels/s  p50 %.2f ms  p99 %.2f ms  peak RSS %.0f KiB\n", median(rates), median(p50s),
                median(p99s), median(rss));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cancel_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
