// kill_bench: how fast and how completely a process tree dies, cgroup v2 kill
// versus the classic `kill -9 -PGID`. For each tree size N a /bin/sh leader
// starts N-1 `sleep 1000` processes, a mix of plain background jobs, `setsid`
// ones and double-forked `(sleep &)` ones. Per run:
//  - cgroup: the tree starts in its own leaf under
//    `<cgroup root>/phonefarm-bench-<pid>/phonefarm-work` (never the agent's
//    tree); time from killCgroup() until cgroup.events reports `populated 0`,
//    then count the recorded pids still alive (expected 0).
//  - baseline: the same tree without a cgroup, the leader in its own session
//    and process group; killpg(SIGKILL), time until the leader is reaped, then
//    count the recorded processes still alive (the ones that left the group).
//    They are cleaned up afterwards.
// Prints medians over the runs. A cgroup survivor fails the bench (exit 1).
// Needs root and a writable cgroup v2 hierarchy; without them it exits 77
// (skipped, for ctest).
//
//   kill_bench [--sizes 10,100,1000] [--runs 5] [--verbose]
//   kill_bench --smoke     # --sizes 10 --runs 1: the same path in a second (ctest, label "bench")
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "agent/exec/cgroup_tree.hpp"
#include "agent/exec/process_group_killer.hpp"
#include "agent/exec/process_spawner.hpp"

namespace {

namespace fs = std::filesystem;
namespace ex = phonefarm::exec;
using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<int> sizes{10, 100, 1000};
  int runs = 5;
  bool verbose = false;
};

// What must be undone if a run fails half-way.
struct Pending {
  std::optional<fs::path> leaf;
  pid_t pgid = -1;
  std::string marker;
  std::vector<pid_t> pids;
  int pidfd = -1;
};

template <class T>
T must(phonefarm::Result<T> r, const std::string& what) {
  if (!r) throw std::runtime_error(what + ": " + r.error().message);
  return std::move(r).value();
}

void sleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The state letter of /proc/<pid>/stat; 0 when the process is gone.
char procState(pid_t pid) {
  const std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return 0;
  return stat[paren + 2];
}

bool isSleep(pid_t pid) { return readFile("/proc/" + std::to_string(pid) + "/comm") == "sleep\n"; }

// Safe to call by pid: every recorded process is our descendant (we are a
// child subreaper) and we reap nothing before counting, so no pid is reused.
bool alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  const char state = procState(pid);
  return state != 0 && state != 'Z';
}

int countAlive(const std::vector<pid_t>& pids) {
  return static_cast<int>(std::count_if(pids.begin(), pids.end(), alive));
}

// Reaps every child (our own and the adopted ones) until there are none left.
bool reapAll(std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(-1, &status, WNOHANG);
    if (r > 0) continue;
    if (r < 0 && errno == ECHILD) return true;
    if (Clock::now() > deadline) return false;
    sleepMs(1);
  }
}

// N-1 background sleeps, cycling plain / setsid / double-forked, then wait.
std::string treeScript(int n) {
  return "i=0; while [ $i -lt " + std::to_string(n - 1) +
         " ]; do case $((i % 3)) in 0) sleep 1000 & ;; 1) setsid sleep 1000 & ;; *) (sleep 1000 &) ;; esac; "
         "i=$((i + 1)); done; wait";
}

ex::Spawned spawnTree(int n, const std::string& marker, std::optional<fs::path> leaf) {
  ex::SpawnRequest req;
  req.argv = {"/bin/sh", "-c", treeScript(n)};
  req.env = {"PATH=/usr/bin:/bin", marker};
  req.cgroup = std::move(leaf);
  req.new_session = true;
  return must(ex::spawnProcess(req), "spawn");
}

void cleanup(Pending& p) {
  if (p.leaf) {
    (void)ex::killCgroup(*p.leaf);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      auto populated = ex::isPopulated(*p.leaf);
      if (!populated || !*populated) break;
      sleepMs(5);
    }
  }
  if (p.pgid > 0) {
    (void)ex::killProcessGroupTree(p.pgid, p.marker);
    ::killpg(p.pgid, SIGKILL);
  }
  for (pid_t pid : p.pids) {
    if (alive(pid)) ::kill(pid, SIGKILL);
  }
  if (p.pidfd >= 0) ::close(p.pidfd);
  if (!reapAll(std::chrono::seconds(10))) std::fprintf(stderr, "kill_bench: warning: children left unreaped\n");
  if (p.leaf) {
    std::error_code ec;
    fs::remove(*p.leaf, ec);  // rmdir; the leaf has no sub-cgroups of its own
    if (ec) std::fprintf(stderr, "kill_bench: warning: rmdir %s: %s\n", p.leaf->c_str(), ec.message().c_str());
  }
  p = Pending{};
}

struct RunResult {
  double ms = 0;
  int survivors = 0;
};

RunResult runCgroup(ex::CgroupTree& tree, int n, int run, Pending& p) {
  const std::string name = "kb-" + std::to_string(n) + "-" + std::to_string(run);
  p.leaf = must(tree.createLeaf(name), "createLeaf");
  p.marker = "PHONEFARM_BENCH_MARK=" + name;
  const ex::Spawned leader = spawnTree(n, p.marker, *p.leaf);
  p.pidfd = leader.pidfd;

  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    auto pids = must(ex::cgroupPids(*p.leaf), "cgroupPids");
    if (static_cast<int>(pids.size()) >= n && std::count_if(pids.begin(), pids.end(), isSleep) >= n - 1) {
      p.pids = std::move(pids);
      break;
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error("tree of " + std::to_string(n) + " did not start within 60 s (" +
                               std::to_string(pids.size()) + " pids)");
    }
    sleepMs(2);
  }

  auto watch = must(ex::CgroupEventsWatch::open(*p.leaf), "CgroupEventsWatch");
  const auto t0 = Clock::now();
  if (auto killed = ex::killCgroup(*p.leaf); !killed) throw std::runtime_error("killCgroup: " + killed.error().message);
  for (;;) {
    if (!must(watch.drainAndCheckPopulated(), "cgroup.events")) break;
    pollfd pfd{watch.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 10000) == 0) throw std::runtime_error("leaf still populated 10 s after the kill");
  }
  const auto t1 = Clock::now();

  RunResult r{std::chrono::duration<double, std::milli>(t1 - t0).count(), countAlive(p.pids)};
  (void)must(ex::reapIfExited(leader.pidfd, leader.pid), "reap leader");
  ::close(p.pidfd);
  p.pidfd = -1;
  if (!reapAll(std::chrono::seconds(10))) throw std::runtime_error("children left unreaped");
  if (auto removed = tree.removeLeaf(*p.leaf); !removed) {
    throw std::runtime_error("removeLeaf: " + removed.error().message);
  }
  p = Pending{};
  return r;
}

// Pids (other than ours) whose environment holds `marker` exactly.
std::vector<pid_t> markedPids(const std::string& marker) {
  std::vector<pid_t> found;
  const std::string needle = std::string(1, '\0') + marker + std::string(1, '\0');
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    const pid_t pid = std::atoi(name.c_str());
    if (pid == ::getpid()) continue;
    const std::string env = std::string(1, '\0') + readFile("/proc/" + name + "/environ") + std::string(1, '\0');
    if (env.find(needle) != std::string::npos) found.push_back(pid);
  }
  return found;
}

RunResult runBaseline(int n, int run, Pending& p) {
  p.marker =
      "PHONEFARM_BENCH_MARK=kb-pg-" + std::to_string(::getpid()) + "-" + std::to_string(n) + "-" + std::to_string(run);
  const ex::Spawned leader = spawnTree(n, p.marker, std::nullopt);
  p.pgid = leader.pid;
  p.pidfd = leader.pidfd;

  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    auto pids = markedPids(p.marker);
    if (static_cast<int>(pids.size()) >= n && std::count_if(pids.begin(), pids.end(), isSleep) >= n - 1) {
      p.pids = std::move(pids);
      break;
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error("tree of " + std::to_string(n) + " did not start within 60 s (" +
                               std::to_string(pids.size()) + " pids)");
    }
    sleepMs(2);
  }

  const auto t0 = Clock::now();
  if (::killpg(p.pgid, SIGKILL) != 0) throw std::runtime_error(std::string("killpg: ") + std::strerror(errno));
  for (;;) {
    if (must(ex::reapIfExited(leader.pidfd, leader.pid), "reap leader")) break;
    pollfd pfd{leader.pidfd, POLLIN, 0};
    if (::poll(&pfd, 1, 10000) == 0) throw std::runtime_error("leader alive 10 s after killpg");
  }
  const auto t1 = Clock::now();

  // SIGKILLed group members may still be on their way out: count once the
  // number of live processes has been stable for a few checks.
  int survivors = countAlive(p.pids);
  for (int stable = 0, i = 0; stable < 5 && i < 200; ++i) {
    sleepMs(10);
    const int now = countAlive(p.pids);
    stable = now == survivors ? stable + 1 : 0;
    survivors = now;
  }
  RunResult r{std::chrono::duration<double, std::milli>(t1 - t0).count(), survivors};
  cleanup(p);  // the survivors: killProcessGroupTree with the marker, then by pid
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 != 0 ? v[m] : (v[m - 1] + v[m]) / 2;
}

constexpr int kSkipped = 77;  // ctest's SKIP_RETURN_CODE (tests/bench/CMakeLists.txt)

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
    } else if (a == "--smoke") {
      o.sizes = {10};
      o.runs = 1;
    } else if (a == "--verbose" || a == "-v") {
      o.verbose = true;
    } else {
      throw std::invalid_argument("usage: kill_bench [--smoke] [--sizes 10,100,1000] [--runs 5] [--verbose]");
    }
  }
  if (o.runs < 1 || o.sizes.empty() || std::any_of(o.sizes.begin(), o.sizes.end(), [](int s) { return s < 1; })) {
    throw std::invalid_argument("--runs and every --sizes entry must be >= 1");
  }
  return o;
}

void raiseLimit(int resource, rlim_t want) {
  rlimit lim{};
  if (::getrlimit(resource, &lim) != 0 || lim.rlim_cur >= want) return;
  lim.rlim_cur = want;
  if (lim.rlim_max < want) lim.rlim_max = want;
  ::setrlimit(resource, &lim);
}

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
    std::fprintf(stderr, "kill_bench: skipped: must run as root (it creates cgroups and kills process trees)\n");
    return kSkipped;
  }
  auto root = ex::detectCgroupRoot("");
  if (!root) {
    std::fprintf(stderr, "kill_bench: skipped: needs a writable cgroup v2 hierarchy: %s\n",
                 root.error().message.c_str());
    return kSkipped;
  }
  const int max_n = *std::max_element(o.sizes.begin(), o.sizes.end());
  raiseLimit(RLIMIT_NPROC, static_cast<rlim_t>(max_n) * 4 + 4096);
  raiseLimit(RLIMIT_NOFILE, 4096);
  if (auto sub = ex::becomeChildSubreaper(); !sub) {
    std::fprintf(stderr, "kill_bench: becomeChildSubreaper: %s\n", sub.error().message.c_str());
    return 2;
  }

  const fs::path bench_dir = *root / ("phonefarm-bench-" + std::to_string(::getpid()));
  std::printf("cgroup dir %s, %d runs per size\n", bench_dir.c_str(), o.runs);
  std::fflush(stdout);
  int rc = 0;
  Pending pending;
  try {
    if (::mkdir(bench_dir.c_str(), 0755) != 0) {
      throw std::runtime_error("mkdir " + bench_dir.string() + ": " + std::strerror(errno));
    }
    auto tree = must(ex::CgroupTree::open(bench_dir), "CgroupTree::open");
    for (int n : o.sizes) {
      std::vector<double> cg_ms, pg_ms, pg_surv;
      int cg_surv_max = 0;
      for (int run = 1; run <= o.runs; ++run) {
        const RunResult cg = runCgroup(tree, n, run, pending);
        const RunResult pg = runBaseline(n, run, pending);
        cg_ms.push_back(cg.ms);
        pg_ms.push_back(pg.ms);
        pg_surv.push_back(pg.survivors);
        cg_surv_max = std::max(cg_surv_max, cg.survivors);
        if (o.verbose) {
          std::printf(
              "  tree %d run %d: cgroup.kill -> empty %.2f ms survivors %d | killpg -> leader reaped %.2f ms "
              "survivors %d of %d\n",
              n, run, cg.ms, cg.survivors, pg.ms, pg.survivors, n);
          std::fflush(stdout);
        }
      }
      std::printf(
          "tree %d: cgroup.kill -> empty median %.2f ms (min %.2f, max %.2f) survivors %d | kill -9 -PGID "
          "survivors median %g of %d\n",
          n, median(cg_ms), *std::min_element(cg_ms.begin(), cg_ms.end()),
          *std::max_element(cg_ms.begin(), cg_ms.end()), cg_surv_max, median(pg_surv), n);
      std::fflush(stdout);
      if (cg_surv_max > 0) {
        std::fprintf(stderr, "kill_bench: FAILED: %d processes of a %d-process tree survived cgroup.kill\n",
                     cg_surv_max, n);
        rc = 1;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kill_bench: %s\n", e.what());
    rc = 1;
  }
  cleanup(pending);
  std::error_code ec;
  fs::remove(bench_dir / ex::CgroupTree::kManagedDirName, ec);
  if (ec) std::fprintf(stderr, "kill_bench: warning: rmdir managed dir: %s\n", ec.message().c_str());
  fs::remove(bench_dir, ec);
  if (ec) std::fprintf(stderr, "kill_bench: warning: rmdir %s: %s\n", bench_dir.c_str(), ec.message().c_str());
  return rc;
}
