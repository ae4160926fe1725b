// The fallback runtime's kill (process_group_killer.hpp) on real process
// trees with setsid and double-fork escapees, no cgroups involved. The test
// process makes itself a child subreaper, as the agent does, so escapees
// re-parent to it; it reaps them (SIGCHLD is blocked and waited on with a
// deadline) and then checks that every recorded pid is really gone.
#include "agent/exec/process_group_killer.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "agent/exec/containment.hpp"
#include "agent/exec/process_spawner.hpp"

namespace phonefarm::exec {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

int msLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

bool exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

char stateOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  const auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() ? '?' : text[close + 2];
}

pid_t parentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  std::istringstream fields(text.substr(text.rfind(')') + 1));
  char state = 0;
  pid_t ppid = 0;
  fields >> state >> ppid;
  return ppid;
}

bool environHas(pid_t pid, const std::string& entry) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  for (std::string line; std::getline(in, line, '\0');) {
    if (line == entry) return true;
  }
  return false;
}

// Reaps everything that is ours and waits on SIGCHLD until none of `pids`
// exists any more; lists the survivors otherwise.
testing::AssertionResult allGone(const std::vector<pid_t>& pids, Clock::time_point deadline) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  for (;;) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    std::vector<pid_t> alive;
    for (const pid_t pid : pids) {
      if (exists(pid)) alive.push_back(pid);
    }
    if (alive.empty()) return testing::AssertionSuccess();
    if (msLeft(deadline) == 0) {
      auto failure = testing::AssertionFailure() << alive.size() << " of " << pids.size() << " still exist:";
      for (const pid_t pid : alive) failure << ' ' << pid << '(' << stateOf(pid) << ')';
      return failure;
    }
    const timespec wait{0, 50'000'000};
    ::sigtimedwait(&chld, nullptr, &wait);
  }
}

// Every sleep prints its own pid once it is in place (after its setsid), then
// the shell prints "ready". Kinds: plain group members, setsid children of the
// live shell, double-forked ones that keep the group, and ones that
// double-fork and setsid (linked to the execution only by the environment).
struct TreeShape {
  int plain = 4;
  int setsid = 3;
  int double_fork = 3;
  int double_fork_setsid = 3;
  size_t total() const { return static_cast<size_t>(plain + setsid + double_fork + double_fork_setsid); }
};

std::string escapeeScript(const TreeShape& shape) {
  const std::string sleeper = "sh -c 'echo $$; exec sleep 1000'";
  std::ostringstream script;
  script << "for i in $(seq " << shape.plain << "); do " << sleeper << " & done; "
         << "for i in $(seq " << shape.setsid << "); do setsid " << sleeper << " & done; "
         << "for i in $(seq " << shape.double_fork << "); do (" << sleeper << " &); done; "
         << "for i in $(seq " << shape.double_fork_setsid << "); do (setsid " << sleeper << " &); done; "
         << "echo ready; wait";
  return script.str();
}

bool aliveAndRunnable(pid_t pid) {
  const char state = stateOf(pid);
  return exists(pid) && state != 'Z' && state != 'T' && state != 't';
}

struct Tree {
  Spawned leader;
  std::vector<pid_t> pids;  // the leader and every sleep
  ~Tree() {
    if (leader.pidfd >= 0) ::close(leader.pidfd);
  }
};

class ProcessGroupKillerTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(becomeChildSubreaper().ok());
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, &saved_mask_);
  }

  void TearDown() override {
    // Also on failure: nothing of ours may outlive the test. killpg only while
    // the leader is unreaped (its pid, hence the group id, cannot be reused);
    // after that, only processes that carry one of our markers.
    for (const auto& started : started_) {
      siginfo_t info{};
      if (::waitid(P_PIDFD, static_cast<id_t>(started.pidfd), &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
        (void)killProcessGroupTree(started.pgid, started.marker);
      }
      ::close(started.pidfd);
    }
    for (const pid_t pid : everything_) {
      auto pidfd = openPidfd(pid);
      if (!pidfd) continue;
      for (const auto& started : started_) {
        if (environHas(pid, started.marker)) (void)signalPidfd(*pidfd, SIGKILL);
      }
      ::close(*pidfd);
    }
    EXPECT_TRUE(allGone(everything_, Clock::now() + 5s));
    ::sigprocmask(SIG_SETMASK, &saved_mask_, nullptr);
  }

  // Starts the escapee tree in a new session, its processes marked with
  // `marker`, and waits (20 s deadline) until every one has reported in.
  void startTree(Tree& tree, const std::string& marker, const TreeShape& shape = {}) {
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    SpawnRequest request;
    request.argv = {"/bin/sh", "-c", escapeeScript(shape)};
    request.env = {"PATH=/usr/bin:/bin", marker};
    request.new_session = true;
    request.stdout_fd = out[1];
    auto spawned = spawnProcess(request);
    ::close(out[1]);
    ASSERT_TRUE(spawned.ok()) << spawned.error().message;
    tree.leader = *spawned;
    tree.pids = {spawned->pid};
    started_.push_back(Started{spawned->pid, marker, ::fcntl(spawned->pidfd, F_DUPFD_CLOEXEC, 3)});
    everything_.push_back(spawned->pid);

    std::string text;
    const auto deadline = Clock::now() + 20s;
    auto count = [&] { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); };
    while ((text.find("ready") == std::string::npos || count() < shape.total() + 1) && msLeft(deadline) > 0) {
      pollfd pfd{out[0], POLLIN, 0};
      if (::poll(&pfd, 1, msLeft(deadline)) <= 0) break;
      char buf[1024];
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line != "ready") tree.pids.push_back(static_cast<pid_t>(std::stoi(line)));
    }
    everything_.insert(everything_.end(), tree.pids.begin() + 1, tree.pids.end());
    ASSERT_EQ(tree.pids.size(), shape.total() + 1) << "tree did not start within 20 s: " << text;
  }

  // Escapees that left the session and were re-parented to us: only the
  // sweep can find these, so a test without them would prove nothing.
  size_t orphanedSetsidEscapees(const Tree& tree) const {
    size_t n = 0;
    for (const pid_t pid : tree.pids) {
      n += ::getsid(pid) == pid && pid != tree.leader.pid && parentOf(pid) == ::getpid() ? 1 : 0;
    }
    return n;
  }

  struct Started {
    pid_t pgid;
    std::string marker;
    int pidfd;  // the leader's, duplicated: tells whether it is still unreaped
  };
  std::vector<Started> started_;
  std::vector<pid_t> everything_;
  sigset_t saved_mask_{};
};

TEST_F(ProcessGroupKillerTest, KillsTheGroupAndEveryEscapee) {
  const std::string marker = "PHONEFARM_TEST_EXECUTION=a-" + std::to_string(::getpid());
  Tree tree;
  ASSERT_NO_FATAL_FAILURE(startTree(tree, marker));
  EXPECT_EQ(orphanedSetsidEscapees(tree), 3U);

  auto report = killProcessGroupTree(tree.leader.pid, marker);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_TRUE(report->group_signalled);
  EXPECT_GE(report->killed.size(), tree.pids.size());
  EXPECT_TRUE(allGone(tree.pids, Clock::now() + 5s));
}

TEST_F(ProcessGroupKillerTest, KillsAHundredProcessTree) {
  const std::string marker = "PHONEFARM_TEST_EXECUTION=h-" + std::to_string(::getpid());
  Tree tree;
  ASSERT_NO_FATAL_FAILURE(startTree(tree, marker, TreeShape{50, 25, 15, 10}));
  EXPECT_EQ(orphanedSetsidEscapees(tree), 10U);

  const auto start = Clock::now();
  auto report = killProcessGroupTree(tree.leader.pid, marker);
  ASSERT_TRUE(report.ok()) << report.error().message;
  const auto issued = Clock::now();
  EXPECT_TRUE(allGone(tree.pids, Clock::now() + 5s));
  std::cout << "[killpg + sweep] " << tree.pids.size() << " processes: kill issued in "
            << std::chrono::duration<double, std::milli>(issued - start).count() << " ms (" << report->rounds
            << " /proc scans), all gone and reaped after "
            << std::chrono::duration<double, std::milli>(Clock::now() - start).count() << " ms\n";
}

// Why the sweep exists: killpg alone leaves the setsid escapees running.
TEST_F(ProcessGroupKillerTest, KillpgAloneLeavesTheEscapees) {
  Tree tree;
  ASSERT_NO_FATAL_FAILURE(startTree(tree, "PHONEFARM_TEST_EXECUTION=b-" + std::to_string(::getpid())));
  std::vector<pid_t> in_group;
  std::vector<pid_t> escaped;
  for (const pid_t pid : tree.pids) (::getpgid(pid) == tree.leader.pid ? in_group : escaped).push_back(pid);
  ASSERT_EQ(::killpg(tree.leader.pid, SIGKILL), 0);
  EXPECT_TRUE(allGone(in_group, Clock::now() + 5s));
  ASSERT_EQ(escaped.size(), 6U);  // 3 setsid children + 3 setsid double-forks
  for (const pid_t pid : escaped) EXPECT_TRUE(aliveAndRunnable(pid)) << pid << " died";
}

TEST_F(ProcessGroupKillerTest, LeavesOtherExecutionsAlone) {
  const std::string marker_a = "PHONEFARM_TEST_EXECUTION=c-" + std::to_string(::getpid());
  const std::string marker_b = "PHONEFARM_TEST_EXECUTION=d-" + std::to_string(::getpid());
  Tree a;
  Tree b;
  ASSERT_NO_FATAL_FAILURE(startTree(a, marker_a));
  ASSERT_NO_FATAL_FAILURE(startTree(b, marker_b));
  auto report = killProcessGroupTree(a.leader.pid, marker_a);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_TRUE(allGone(a.pids, Clock::now() + 5s));
  for (const pid_t pid : b.pids) {
    EXPECT_TRUE(aliveAndRunnable(pid)) << pid << " of the other execution was hit (stopped or killed)";
  }
}

// After a restart the stored leader pid may name another process: pid reuse.
// Here the stored start time is off by one tick, so the live group with that
// id is someone else's: the fallback's kill must not touch it, only
// processes carrying the execution's own marker (none here).
TEST_F(ProcessGroupKillerTest, AnAdoptedGroupWhoseLeaderStartTimeDiffersIsNeverSignalled) {
  Tree other;
  ASSERT_NO_FATAL_FAILURE(startTree(other, "PHONEFARM_TEST_EXECUTION=e-" + std::to_string(::getpid())));
  const auto start = processStartTime(other.leader.pid);
  ASSERT_TRUE(start.has_value());
  auto containment = makeContainment("/nonexistent-cgroup-root");  // the process-group runtime
  ASSERT_EQ(containment->runtime(), kRuntimeProcessGroup);
  ContainerInfo stored{"stale", std::string(kRuntimeProcessGroup), std::nullopt, other.leader.pid, *start + 1};
  auto adopted = containment->adopt(stored, "PHONEFARM_TEST_EXECUTION=stale-" + std::to_string(::getpid()));
  ASSERT_TRUE(adopted.ok()) << adopted.error().message;
  EXPECT_FALSE((*adopted)->signalLeader(SIGTERM).ok()) << "the leader was not verified, it must not be signalled";
  ASSERT_TRUE((*adopted)->kill().ok());
  for (const pid_t pid : other.pids) {
    EXPECT_TRUE(aliveAndRunnable(pid)) << pid << " of a group whose leader only shares the pid was hit";
  }
}

TEST_F(ProcessGroupKillerTest, RefusesOurOwnGroupAndInit) {
  EXPECT_FALSE(killProcessGroupTree(::getpgrp()).ok());
  EXPECT_FALSE(killProcessGroupTree(1).ok());
  EXPECT_FALSE(killProcessGroupTree(0).ok());
}

TEST_F(ProcessGroupKillerTest, ReapsAdoptedZombiesButNotTheLeadersItKeeps) {
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  SpawnRequest request;
  // The leader double-forks a child that exits at once, then exits itself.
  request.argv = {"/bin/sh", "-c", "(sh -c 'echo $$; exit 0' &); exit 7"};
  request.stdout_fd = out[1];
  auto spawned = spawnProcess(request);
  ::close(out[1]);
  ASSERT_TRUE(spawned.ok()) << spawned.error().message;
  Tree tree;
  tree.leader = *spawned;
  char buf[64] = {};
  ASSERT_GT(::read(out[0], buf, sizeof buf - 1), 0);
  ::close(out[0]);
  const pid_t orphan = static_cast<pid_t>(std::stoi(buf));

  const pid_t keep[] = {tree.leader.pid};
  const sigset_t chld = [] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    return set;
  }();
  const auto deadline = Clock::now() + 5s;
  int reaped = 0;
  while (exists(orphan) && msLeft(deadline) > 0) {
    reaped += reapAdoptedZombies(keep);
    const timespec wait{0, 50'000'000};
    if (exists(orphan)) ::sigtimedwait(&chld, nullptr, &wait);
  }
  EXPECT_FALSE(exists(orphan));
  EXPECT_GE(reaped, 1);
  pollfd pfd{tree.leader.pidfd, POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
  auto status = reapIfExited(tree.leader.pidfd, tree.leader.pid);
  ASSERT_TRUE(status.ok()) << status.error().message;  // still ours to reap
  ASSERT_TRUE(status->has_value());
  EXPECT_EQ((*status)->code, 7);
}

}  // namespace
}  // namespace phonefarm::exec
