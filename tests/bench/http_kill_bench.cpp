// http_kill_bench: end-to-end hard cancel of real work through the agent's
// API. It starts phonefarm-agent (run_as = "nobody", executions in a cgroup v2
// subtree of the bench's own) and, per tree size N and run, submits a process
// whose one queue item forks N-1 `sleep 3600` (plain background jobs, `setsid`
// ones and double-forked setsid orphans) and records every pid. Once all N are
// alive it measures, from just before `POST /processes/{id}/cancel` with
// strategy "hard":
//  - response: until the 200 arrives;
//  - to empty cgroup: until the leaf named by termination.container.cgroup
//    reports `populated 0` (inotify on its cgroup.events, armed before the
//    request, so this does not include waiting for the response);
// then waits for the process to be `cancelled` and counts survivors: recorded
// pids (same start time) still alive and not zombies. Prints median/min/max
// per N and whether a 1000-process tree is empty within 250 ms. A survivor
// fails the bench (exit 1). The phone is a name only: work starts without
// waiting for a device and no reset follows the kill (no adb server is
// reachable). Needs root and a writable cgroup v2 hierarchy; not root, it
// exits 77 (skipped, for ctest).
//
//   http_kill_bench [--sizes 10,100,1000] [--runs 5] [--dir /var/tmp] [--agent PATH] [--verbose]
//   http_kill_bench --smoke    # --sizes 10 --runs 1: the same path in a few seconds (ctest, label "bench")
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/http_client.hpp"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using phonefarm::testing::HttpClient;

constexpr const char* kOperateToken = "bench-operate-0123456789abcdef";
constexpr const char* kScheduleToken = "bench-schedule-0123456789abcdef";
constexpr auto kTreeStartLimit = std::chrono::seconds(60);
constexpr auto kEmptyLimit = std::chrono::seconds(10);
constexpr auto kCancelledLimit = std::chrono::seconds(30);

struct Options {
  std::vector<int> sizes{10, 100, 1000};
  int runs = 5;
  std::string dir = "/var/tmp";
  std::string agent = PHONEFARM_AGENT_BINARY;
  bool verbose = false;
};

// For the SIGINT/SIGTERM handler: what to stop (async-signal-safe calls only).
volatile pid_t g_agent_pid = -1;
char g_cgroup_kill[4096] = {};

void onSignal(int sig) {
  if (g_cgroup_kill[0] != '\0') {
    const int fd = ::open(g_cgroup_kill, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)!::write(fd, "1", 1);
      ::close(fd);
    }
  }
  if (g_agent_pid > 0) ::kill(g_agent_pid, SIGTERM);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void writeFile(const fs::path& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("open " + path.string() + ": " + std::strerror(errno));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::fchmod(fd, mode);  // exactly `mode`, whatever the umask
  ::close(fd);
  if (!ok) throw std::runtime_error("write " + path.string());
}

void sleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

double msBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// ---- cgroup v2 --------------------------------------------------------------

// The cgroup2 mount point (from /proc/self/mountinfo) and its root.
std::pair<fs::path, std::string> cgroup2Mount() {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream after(line.substr(dash + 3));
    std::string fstype;
    after >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream before(line.substr(0, dash));
    std::string id, parent, devno, root, mountpoint;
    before >> id >> parent >> devno >> root >> mountpoint;
    return {mountpoint, root};
  }
  throw std::runtime_error("no cgroup2 mount in /proc/self/mountinfo");
}

// A cgroup as /proc/<pid>/cgroup names it ("0::/a/b") -> its directory.
std::optional<fs::path> cgroupDirOf(const std::string& proc_cgroup_file) {
  std::istringstream in(readFile(proc_cgroup_file));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) != 0) continue;
    static const auto mount = cgroup2Mount();
    std::string rel = line.substr(3);
    if (mount.second != "/" && rel.rfind(mount.second, 0) == 0) rel = rel.substr(mount.second.size());
    return (mount.first / fs::path(rel).relative_path()).lexically_normal();
  }
  return std::nullopt;
}

// "populated 1" -> true, "populated 0" -> false, unreadable (removed) -> nullopt.
std::optional<bool> populated(const fs::path& cgroup) {
  std::ifstream in(cgroup / "cgroup.events");
  if (!in) return std::nullopt;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("populated ", 0) == 0) return line.substr(10) != "0";
  }
  return std::nullopt;
}

void removeCgroupTree(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::error_code type_ec;
    if (entry.is_directory(type_ec)) removeCgroupTree(entry.path());
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
    std::fprintf(stderr, "http_kill_bench: warning: rmdir %s: %s\n", dir.c_str(), std::strerror(errno));
  }
}

// Kills everything under `dir` (ours), waits for it to be empty, removes it.
void destroyCgroupTree(const fs::path& dir) {
  if (dir.empty() || !fs::exists(dir)) return;
  std::ofstream(dir / "cgroup.kill") << "1";
  const auto deadline = Clock::now() + kEmptyLimit;
  while (populated(dir).value_or(false) && Clock::now() < deadline) sleepMs(5);
  removeCgroupTree(dir);
}

// Waits, on a thread of its own, for a leaf to report `populated 0`: inotify
// IN_MODIFY on cgroup.events, re-reading the file after each event. Armed
// before the cancel is sent, so the time it records is independent of when
// the response arrives. A leaf that is already empty, or already removed,
// counts as empty when it is checked.
class EmptyWatch {
 public:
  explicit EmptyWatch(const fs::path& leaf) : leaf_(leaf) {
    inotify_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    stop_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (inotify_ < 0 || stop_ < 0) throw std::runtime_error(std::string("inotify/eventfd: ") + std::strerror(errno));
    if (::inotify_add_watch(inotify_, (leaf / "cgroup.events").c_str(), IN_MODIFY) < 0) {
      throw std::runtime_error("inotify_add_watch " + leaf.string() + "/cgroup.events: " + std::strerror(errno));
    }
    thread_ = std::thread([this] { run(); });
  }
  ~EmptyWatch() {
    const std::uint64_t one = 1;
    (void)!::write(stop_, &one, sizeof one);
    if (thread_.joinable()) thread_.join();
    ::close(inotify_);
    ::close(stop_);
  }
  EmptyWatch(const EmptyWatch&) = delete;
  EmptyWatch& operator=(const EmptyWatch&) = delete;

  const fs::path& leaf() const { return leaf_; }
  // When the leaf was seen empty; nullopt if it was not within the limit.
  std::optional<Clock::time_point> wait() {
    thread_.join();
    return empty_at_;
  }

 private:
  void run() {
    const auto deadline = Clock::now() + kEmptyLimit;
    for (;;) {
      if (!populated(leaf_).value_or(false)) {
        empty_at_ = Clock::now();
        return;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return;
      pollfd fds[2] = {{inotify_, POLLIN, 0}, {stop_, POLLIN, 0}};
      const int n = ::poll(fds, 2, static_cast<int>(left));
      if (n < 0 && errno != EINTR) return;
      if (fds[1].revents != 0) return;
      alignas(inotify_event) char buf[4096];
      while (::read(inotify_, buf, sizeof buf) > 0) {
      }
    }
  }

  fs::path leaf_;
  int inotify_ = -1;
  int stop_ = -1;
  std::optional<Clock::time_point> empty_at_;
  std::thread thread_;
};

// ---- processes --------------------------------------------------------------

// /proc/<pid>/stat: the state letter and the start time (field 22); state 0
// when the process is gone.
std::pair<char, unsigned long long> procStat(pid_t pid) {
  const std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return {0, 0};
  std::istringstream rest(stat.substr(paren + 2));
  std::string field;
  char state = 0;
  rest >> state;
  for (int i = 4; i < 22 && rest >> field; ++i) {
  }
  unsigned long long start = 0;
  rest >> start;
  return {state, start};
}

struct Recorded {
  pid_t pid;
  unsigned long long start_time;
};

// Alive: the same process (start time) still exists and is not a zombie.
bool alive(const Recorded& r) {
  const auto [state, start] = procStat(r.pid);
  return state != 0 && state != 'Z' && state != 'X' && start == r.start_time;
}

int countSurvivors(const std::vector<Recorded>& pids) {
  return static_cast<int>(std::count_if(pids.begin(), pids.end(), alive));
}

std::vector<pid_t> parsePids(const std::string& text) {
  std::vector<pid_t> pids;
  std::istringstream in(text);
  for (long v = 0; in >> v;) pids.push_back(static_cast<pid_t>(v));
  return pids;
}

void raiseLimit(int resource, rlim_t want) {
  rlimit lim{};
  if (::getrlimit(resource, &lim) != 0 || lim.rlim_cur >= want) return;
  lim.rlim_cur = want;
  if (lim.rlim_max < want) lim.rlim_max = want;
  ::setrlimit(resource, &lim);
}

// ---- the agent --------------------------------------------------------------

// The job: $1 the pids file, $2 the tree size N. The script and N-1 sleeps,
// cycling plain background / setsid / double-forked setsid orphan; every pid
// is appended to $1.
constexpr const char* kTreeScript =
    "#!/bin/sh\n"
    "out=\"$1\"\n"
    "echo $$ >> \"$out\"\n"
    "i=1\n"
    "while [ $i -lt \"$2\" ]; do\n"
    "  case $((i % 3)) in\n"
    "    1) sleep 3600 & echo $! >> \"$out\" ;;\n"
    "    2) setsid sleep 3600 & echo $! >> \"$out\" ;;\n"
    "    *) ( setsid sh -c 'sleep 3600 & echo $! >> \"$0\"' \"$out\" & ) ;;\n"
    "  esac\n"
    "  i=$((i+1))\n"
    "done\n"
    "wait\n";

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}
  ~Bench() { cleanup(); }
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  void setUp() {
    char tmpl[4096];
    std::snprintf(tmpl, sizeof tmpl, "%s/http-kill-bench-XXXXXX", o_.dir.c_str());
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp in " + o_.dir + ": " + std::strerror(errno));
    dir_ = tmpl;
    // nobody must traverse to the jobs, the out dir and its execution dir in state/.
    fs::permissions(dir_, fs::perms(0711), fs::perm_options::replace);
    fs::create_directories(jobsDir());
    fs::create_directories(outDir());
    fs::permissions(outDir(), fs::perms(0777), fs::perm_options::replace);
    writeFile(jobsDir() / "tree.sh", kTreeScript, 0755);
    writeFile(
        dir_ / "tokens",
        std::string("bench-operator operate ") + kOperateToken + "\nbench-scheduler schedule " + kScheduleToken + "\n",
        0600);

    const auto own = cgroupDirOf("/proc/self/cgroup");
    if (!own) throw std::runtime_error("not in a cgroup v2 hierarchy (/proc/self/cgroup has no 0:: line)");
    cgroup_root_ = *own / ("phonefarm-httpbench-" + std::to_string(::getpid()));
    if (::mkdir(cgroup_root_.c_str(), 0755) != 0) {
      const int err = errno;
      cgroup_root_.clear();
      throw std::runtime_error("mkdir " + (*own / "phonefarm-httpbench-*").string() + ": " + std::strerror(err));
    }
    std::snprintf(g_cgroup_kill, sizeof g_cgroup_kill, "%s/cgroup.kill", cgroup_root_.c_str());

    writeFile(configPath(),
              "listen = \"127.0.0.1:0\"\nstate_dir = \"" + (dir_ / "state").string() + "\"\ntokens_file = \"" +
                  (dir_ / "tokens").string() + "\"\n[work]\nrun_as = \"nobody\"\nallowed_command_prefixes = [\"" +
                  jobsDir().string() + "/\", \"/usr/bin/\"]\ncgroup_root = \"" + cgroup_root_.string() +
                  "\"\nwait_for_device = false\n[adb]\nserver = \"127.0.0.1:1\"\nadb_path = \"/bin/false\"\n"
                  "[reset]\non_forced_cancel = false\n[[phones]]\nid = \"phone_01\"\nserial = \"bench-1\"\n",
              0600);
    startAgent();
    client_.emplace("127.0.0.1", port_);
  }

  const fs::path& dir() const { return dir_; }
  const fs::path& cgroupRoot() const { return cgroup_root_; }

  struct RunResult {
    double response_ms = 0;
    double empty_ms = 0;
    int survivors = 0;
    double spawn_ms = 0;  // submit until all N pids were alive (not part of the measurement)
  };

  RunResult runOnce(int n, int run) {
    const std::string id = "hkb-" + std::to_string(n) + "-" + std::to_string(run);
    const fs::path pids_file = outDir() / (id + ".pids");
    const auto submitted = Clock::now();
    json::object body{
        {"process_id", id},
        {"phone_id", "phone_01"},
        {"account_id", "bench"},
        {"requested_by", json::object{{"system", "http_kill_bench"}}},
        {"queue_items", json::array{json::object{{"command", json::array{(jobsDir() / "tree.sh").string(),
                                                                         pids_file.string(), std::to_string(n)}}}}}};
    auto submit = call("POST", "/processes", json::serialize(body), kScheduleToken);
    if (submit.status != 201)
      throw std::runtime_error("submit " + id + ": " + std::to_string(submit.status) + " " + submit.body);

    // All N pids recorded and alive (with their start times, to rule out pid reuse later).
    std::vector<Recorded> pids;
    for (const auto deadline = submitted + kTreeStartLimit;;) {
      pids.clear();
      const auto recorded = parsePids(readFile(pids_file));
      if (static_cast<int>(recorded.size()) >= n) {
        for (pid_t pid : recorded) {
          const auto [state, start] = procStat(pid);
          if (state != 0 && state != 'Z' && state != 'X') pids.push_back({pid, start});
        }
        if (static_cast<int>(pids.size()) == static_cast<int>(recorded.size())) break;
      }
      if (Clock::now() > deadline) {
        throw std::runtime_error(id + ": " + std::to_string(recorded.size()) + " of " + std::to_string(n) +
                                 " pids recorded (" + std::to_string(pids.size()) + " alive) after 60 s; process: " +
                                 call("GET", "/processes/" + id, "", kOperateToken).body);
      }
      sleepMs(5);
    }
    const auto spawned = Clock::now();

    // Arm the watch on the leaf the work runs in; the response must name the same one.
    auto leaf = cgroupDirOf("/proc/" + std::to_string(pids.front().pid) + "/cgroup");
    if (!leaf) throw std::runtime_error(id + ": cannot read the work's cgroup");
    auto watch = std::make_unique<EmptyWatch>(*leaf);
    if (auto warm = call("GET", "/processes/" + id, "", kOperateToken); warm.status != 200) {
      throw std::runtime_error("GET " + id + ": " + std::to_string(warm.status));
    }

    const auto t0 = Clock::now();
    auto cancel = call("POST", "/processes/" + id + "/cancel",
                       R"({"reason":"bench","requested_by":{},"strategy":"hard"})", kOperateToken);
    const auto t1 = Clock::now();
    if (cancel.status != 200) {
      throw std::runtime_error("cancel " + id + ": " + std::to_string(cancel.status) + " " + cancel.body);
    }
    const json::value answer = cancel.json();
    const auto* termination = answer.as_object().if_contains("termination");
    const json::value* container = termination != nullptr ? termination->as_object().if_contains("container") : nullptr;
    if (termination == nullptr || termination->at("status") != "issued" || container == nullptr ||
        !container->is_object() || !container->at("cgroup").is_string()) {
      throw std::runtime_error("cancel " + id + ": no issued cgroup kill in " + cancel.body);
    }
    const fs::path cgroup = fs::path(std::string(container->at("cgroup").as_string())).lexically_normal();
    if (cgroup != watch->leaf()) {
      // Not where the work was found: watch the leaf the response names (this
      // one starts after t1, so the time is an upper bound).
      std::fprintf(stderr, "http_kill_bench: note: response cgroup %s, work was in %s\n", cgroup.c_str(),
                   watch->leaf().c_str());
      watch.reset();
      watch = std::make_unique<EmptyWatch>(cgroup);
    }
    const auto t2 = watch->wait();
    if (!t2) throw std::runtime_error(id + ": " + cgroup.string() + " still populated 10 s after the cancel");
    watch.reset();

    // The item ends when the leaf is empty; the phone is free once the process is cancelled.
    std::string status;
    for (const auto deadline = Clock::now() + kCancelledLimit;;) {
      auto got = call("GET", "/processes/" + id, "", kOperateToken);
      if (got.status == 200) status = std::string(got.json().at("status").as_string());
      if (status == "cancelled") break;
      if (Clock::now() > deadline) {
        throw std::runtime_error(id + ": not cancelled 30 s after the cancel (status " + status + "): " + got.body);
      }
      sleepMs(5);
    }

    RunResult r{msBetween(t0, t1), msBetween(t0, *t2), countSurvivors(pids), msBetween(submitted, spawned)};
    if (r.survivors > 0) {  // a process on its way out after leaving the cgroup is not a survivor
      sleepMs(100);
      r.survivors = countSurvivors(pids);
    }
    return r;
  }

  void printAgentLogTail(std::size_t lines) const {
    std::ifstream in(dir_ / "agent.log");
    std::deque<std::string> tail;
    for (std::string line; std::getline(in, line);) {
      tail.push_back(line);
      if (tail.size() > lines) tail.pop_front();
    }
    std::fprintf(stderr, "--- last agent log lines ---\n");
    for (const auto& l : tail) std::fprintf(stderr, "%s\n", l.c_str());
  }

  void cleanup() {
    client_.reset();
    if (agent_pid_ > 0) {
      ::kill(agent_pid_, SIGTERM);
      int status = 0;
      const auto deadline = Clock::now() + std::chrono::seconds(10);
      while (::waitpid(agent_pid_, &status, WNOHANG) == 0) {
        if (Clock::now() > deadline) {
          std::fprintf(stderr, "http_kill_bench: agent did not stop on SIGTERM; SIGKILL\n");
          ::kill(agent_pid_, SIGKILL);
          ::waitpid(agent_pid_, &status, 0);
          break;
        }
        sleepMs(10);
      }
      agent_pid_ = -1;
      g_agent_pid = -1;
    }
    if (reader_.joinable()) reader_.join();
    if (!cgroup_root_.empty()) {
      destroyCgroupTree(cgroup_root_);  // whatever work is left dies with the subtree
      g_cgroup_kill[0] = '\0';
      cgroup_root_.clear();
    }
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
      dir_.clear();
    }
  }

 private:
  fs::path jobsDir() const { return dir_ / "jobs"; }
  fs::path outDir() const { return dir_ / "out"; }
  fs::path configPath() const { return dir_ / "agent.toml"; }

  HttpClient::Response call(const std::string& method, const std::string& target, const std::string& body,
                            const char* token) {
    HttpClient::Headers headers{{"Authorization", std::string("Bearer ") + token}};
    return client_->request(method, target, body, headers);
  }

  void startAgent() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    const std::string config = configPath().string();
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      // The agent must not outlive the bench.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(fds[1], 1);
      ::dup2(fds[1], 2);
      ::execl(o_.agent.c_str(), o_.agent.c_str(), "--config", config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    agent_pid_ = pid;
    g_agent_pid = pid;
    ::close(fds[1]);
    FILE* out = ::fdopen(fds[0], "r");
    std::ofstream log(dir_ / "agent.log");
    char line[4096];
    while (std::fgets(line, sizeof line, out) != nullptr) {
      log << line;
      if (const char* addr = std::strstr(line, "http.listening addr=")) {
        port_ = static_cast<std::uint16_t>(std::atoi(std::strrchr(addr, ':') + 1));
        break;
      }
    }
    log.close();
    // Keep draining the agent's output into the log so it never blocks.
    reader_ = std::thread([out, path = dir_ / "agent.log"] {
      std::ofstream sink(path, std::ios::app);
      char buf[4096];
      while (std::fgets(buf, sizeof buf, out) != nullptr) sink << buf << std::flush;
      std::fclose(out);
    });
    if (port_ == 0) throw std::runtime_error("the agent did not start (" + o_.agent + ")");
  }

  Options o_;
  fs::path dir_;
  fs::path cgroup_root_;
  pid_t agent_pid_ = -1;
  std::uint16_t port_ = 0;
  std::thread reader_;
  std::optional<HttpClient> client_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 != 0 ? v[m] : (v[m - 1] + v[m]) / 2;
}

Options parseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--sizes" && i + 1 < argc) {
      o.sizes.clear();
      std::stringstream ss(argv[++i]);
      for (std::string s; std::getline(ss, s, ',');) o.sizes.push_back(std::atoi(s.c_str()));
    } else if (a == "--runs" && i + 1 < argc) {
      o.runs = std::atoi(argv[++i]);
    } else if (a == "--dir" && i + 1 < argc) {
      o.dir = argv[++i];
    } else if (a == "--agent" && i + 1 < argc) {
      o.agent = argv[++i];
    } else if (a == "--smoke") {
      o.sizes = {10};
      o.runs = 1;
    } else if (a == "--verbose" || a == "-v") {
      o.verbose = true;
    } else {
      throw std::invalid_argument(
          "usage: http_kill_bench [--smoke] [--sizes 10,100,1000] [--runs 5] [--dir /var/tmp] [--agent PATH] "
          "[--verbose]");
    }
  }
  if (o.runs < 1 || o.sizes.empty() || std::any_of(o.sizes.begin(), o.sizes.end(), [](int s) { return s < 1; })) {
    throw std::invalid_argument("--runs and every --sizes entry must be >= 1");
  }
  return o;
}

struct Row {
  int n = 0;
  std::vector<double> response_ms, empty_ms;
  int survivors = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parseArgs(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "http_kill_bench: skipped: must run as root (the agent runs work as nobody in cgroups)\n");
    return 77;  // ctest's SKIP_RETURN_CODE (tests/bench/CMakeLists.txt)
  }
  const int max_n = *std::max_element(o.sizes.begin(), o.sizes.end());
  raiseLimit(RLIMIT_NPROC, static_cast<rlim_t>(max_n) * 4 + 4096);  // inherited by the agent and the work
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  int rc = 0;
  std::vector<Row> rows;
  Bench bench(o);
  try {
    bench.setUp();
    std::printf("http_kill_bench: agent %s\n  state in %s, work cgroups under %s, %d runs per size\n", o.agent.c_str(),
                bench.dir().c_str(), bench.cgroupRoot().c_str(), o.runs);
    std::fflush(stdout);
    for (int n : o.sizes) {
      Row row;
      row.n = n;
      for (int run = 1; run <= o.runs; ++run) {
        const auto r = bench.runOnce(n, run);
        row.response_ms.push_back(r.response_ms);
        row.empty_ms.push_back(r.empty_ms);
        row.survivors += r.survivors;
        if (o.verbose) {
          std::printf("  N=%d run %d: tree up in %.0f ms | response %.2f ms | to empty cgroup %.2f ms | survivors %d\n",
                      n, run, r.spawn_ms, r.response_ms, r.empty_ms, r.survivors);
          std::fflush(stdout);
        }
      }
      if (row.survivors > 0) {
        std::fprintf(stderr, "http_kill_bench: FAILED: %d processes survived the hard cancels of %d-process trees\n",
                     row.survivors, n);
        rc = 1;
      }
      rows.push_back(std::move(row));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_kill_bench: %s\n", e.what());
    bench.printAgentLogTail(30);
    rc = 1;
  }
  bench.cleanup();

  if (!rows.empty()) {
    std::printf("\n%6s %5s | %-26s | %-26s | %s\n", "", "", "response ms", "to empty cgroup ms", "");
    std::printf("%6s %5s | %8s %8s %8s | %8s %8s %8s | %s\n", "N", "runs", "median", "min", "max", "median", "min",
                "max", "survivors");
    for (const auto& row : rows) {
      auto [rmin, rmax] = std::minmax_element(row.response_ms.begin(), row.response_ms.end());
      auto [emin, emax] = std::minmax_element(row.empty_ms.begin(), row.empty_ms.end());
      std::printf("%6d %5zu | %8.2f %8.2f %8.2f | %8.2f %8.2f %8.2f | %d\n", row.n, row.response_ms.size(),
                  median(row.response_ms), *rmin, *rmax, median(row.empty_ms), *emin, *emax, row.survivors);
    }
    const auto big = std::find_if(rows.begin(), rows.end(), [](const Row& r) { return r.n == 1000; });
    if (big != rows.end()) {
      const double med = median(big->empty_ms);
      std::printf("1000-process tree empty ≤ 250 ms: %s (median %.2f ms, max %.2f ms)\n", med <= 250 ? "yes" : "no",
                  med, *std::max_element(big->empty_ms.begin(), big->empty_ms.end()));
    } else {
      std::printf("1000-process tree empty ≤ 250 ms: n/a (no N=1000 in --sizes)\n");
    }
  }
  return rc;
}
