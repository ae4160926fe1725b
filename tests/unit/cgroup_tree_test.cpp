// CgroupTree, the cgroup kill paths and CgroupEventsWatch against the real
// cgroup v2 hierarchy, with real processes started by spawnProcess. Needs root
// and a cgroup2 mount (CI has both); skips with the reason otherwise. Each test
// works in its own `<detected root>/phonefarm-unit-<pid>` so it never touches
// a running agent's `phonefarm-work`. The test process is a child subreaper:
// escapees re-parent to it, so it can reap them and check that every pid is
// really gone (init on some hosts never reaps).
#include "agent/exec/cgroup_tree.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "agent/exec/process_group_killer.hpp"
#include "agent/exec/process_spawner.hpp"

namespace phonefarm::exec {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

int msLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits on the watch's fd (no sleeps) until the leaf reports `populated 0`.
bool waitUntilEmpty(CgroupEventsWatch& watch, Clock::time_point deadline) {
  for (;;) {
    auto populated = watch.drainAndCheckPopulated();
    if (populated && !*populated) return true;
    if (!populated || msLeft(deadline) == 0) return false;
    pollfd pfd{watch.fd(), POLLIN, 0};
    ::poll(&pfd, 1, msLeft(deadline));
  }
}

void reapAll() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

// Reaps what is ours and waits on SIGCHLD (blocked by the fixture) until no
// pid in `pids` exists any more; lists the survivors otherwise.
testing::AssertionResult allGone(const std::vector<pid_t>& pids, Clock::time_point deadline) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  for (;;) {
    reapAll();
    std::vector<pid_t> alive;
    for (const pid_t pid : pids) {
      if (::kill(pid, 0) == 0 || errno != ESRCH) alive.push_back(pid);
    }
    if (alive.empty()) return testing::AssertionSuccess();
    if (msLeft(deadline) == 0) {
      auto failure = testing::AssertionFailure() << alive.size() << " of " << pids.size() << " still exist:";
      for (const pid_t pid : alive) failure << ' ' << pid;
      return failure;
    }
    const timespec wait{0, 50'000'000};
    ::sigtimedwait(&chld, nullptr, &wait);
  }
}

// Reads from `fd` until `marker` has arrived or the deadline passes.
std::string readUntil(int fd, const std::string& marker, Clock::time_point deadline) {
  std::string text;
  while (text.find(marker) == std::string::npos && msLeft(deadline) > 0) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, msLeft(deadline)) <= 0) break;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

std::string ownCgroupPath() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return {};
}

std::string cgroupOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return {};
}

bool hasCgroup2Mount() {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.find(" - cgroup2 ") != std::string::npos) return true;
  }
  return false;
}

// Closes the pidfd; the process itself is reaped by the test or the guard.
struct Child {
  Spawned spawned;
  ~Child() {
    if (spawned.pidfd >= 0) ::close(spawned.pidfd);
  }
};

class CgroupTreeTest : public testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    if (!hasCgroup2Mount()) GTEST_SKIP() << "no cgroup2 filesystem mounted";
    // With root and a cgroup2 mount, detection failing is a bug, not a skip.
    auto root = detectCgroupRoot("");
    ASSERT_TRUE(root.ok()) << root.error().message;
    detected_ = *root;
    test_root_ = detected_ / ("phonefarm-unit-" + std::to_string(::getpid()));
    fs::create_directory(test_root_);
    auto tree = CgroupTree::open(test_root_);
    ASSERT_TRUE(tree.ok()) << tree.error().message;
    tree_.emplace(std::move(*tree));
    ASSERT_TRUE(becomeChildSubreaper().ok());
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, &saved_mask_);
    mask_saved_ = true;
  }

  void TearDown() override {
    if (tree_) {
      // Also on failure: kill, wait for emptiness, reap, rmdir every leaf.
      for (const auto& leaf : tree_->leaves()) {
        (void)killCgroup(leaf);
        if (auto watch = CgroupEventsWatch::open(leaf)) waitUntilEmpty(*watch, Clock::now() + 5s);
        reapAll();
        EXPECT_TRUE(tree_->removeLeaf(leaf).ok()) << leaf;
      }
      ::rmdir(tree_->dir().c_str());
    }
    if (mask_saved_) ::sigprocmask(SIG_SETMASK, &saved_mask_, nullptr);
    if (!test_root_.empty()) ::rmdir(test_root_.c_str());
  }

  Child spawnInto(const fs::path& leaf, std::vector<std::string> argv, int stdout_fd = -1) {
    SpawnRequest request;
    request.argv = std::move(argv);
    request.env = {"PATH=/usr/bin:/bin"};
    request.cgroup = leaf;
    request.stdout_fd = stdout_fd;
    auto spawned = spawnProcess(request);
    EXPECT_TRUE(spawned.ok()) << spawned.error().message;
    return Child{spawned.ok() ? *spawned : Spawned{}};
  }

  // The cgroup path the kernel shows in /proc/<pid>/cgroup for `leaf`.
  std::string kernelPathOf(const fs::path& leaf) const {
    const std::string own = ownCgroupPath();
    return (fs::path(own) / leaf.lexically_relative(detected_)).lexically_normal().string();
  }

  fs::path detected_;
  fs::path test_root_;
  std::optional<CgroupTree> tree_;
  sigset_t saved_mask_{};
  bool mask_saved_ = false;
};

TEST_F(CgroupTreeTest, DetectsAWritableCgroup2Root) {
  struct statfs sfs {};
  ASSERT_EQ(::statfs(detected_.c_str(), &sfs), 0);
  EXPECT_EQ(sfs.f_type, CGROUP2_SUPER_MAGIC);
  EXPECT_EQ(fs::path(kernelPathOf(detected_)), fs::path(ownCgroupPath()).lexically_normal());

  auto configured = detectCgroupRoot(detected_.string());
  ASSERT_TRUE(configured.ok()) << configured.error().message;
  EXPECT_EQ(*configured, detected_);

  auto not_cgroup = detectCgroupRoot("/tmp");
  ASSERT_FALSE(not_cgroup.ok());
  EXPECT_NE(not_cgroup.error().message.find("/tmp is not on a cgroup2 filesystem"), std::string::npos);
  auto missing = detectCgroupRoot("/nonexistent/cgroup");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/cgroup: No such file or directory"), std::string::npos);
}

TEST_F(CgroupTreeTest, CreatesListsAndRemovesLeaves) {
  EXPECT_EQ(tree_->dir(), test_root_ / "phonefarm-work");
  auto leaf = tree_->createLeaf("item_01.run-2");
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  EXPECT_TRUE(fs::exists(*leaf / "cgroup.events"));
  EXPECT_EQ(tree_->leaves(), std::vector<fs::path>{*leaf});
  auto populated = isPopulated(*leaf);
  ASSERT_TRUE(populated.ok()) << populated.error().message;
  EXPECT_FALSE(*populated);

  auto again = tree_->createLeaf("item_01.run-2");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, ErrorKind::kConflict);

  auto outside = tree_->removeLeaf(test_root_);
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.error().kind, ErrorKind::kInvalid);

  ASSERT_TRUE(tree_->removeLeaf(*leaf).ok());
  EXPECT_FALSE(fs::exists(*leaf));
  EXPECT_TRUE(tree_->leaves().empty());
}

TEST_F(CgroupTreeTest, PidsControllerIsEnabledForLeavesOrTheReasonIsRecorded) {
  std::ifstream in(tree_->dir() / "cgroup.subtree_control");
  std::string enabled((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const bool has_pids = enabled.find("pids") != std::string::npos;
  if (tree_->pidsControllerError()) {
    EXPECT_FALSE(has_pids);
    EXPECT_FALSE(tree_->pidsControllerError()->empty());
    std::cout << "pids controller not enabled: " << *tree_->pidsControllerError() << '\n';
  } else {
    EXPECT_TRUE(has_pids) << enabled;
  }
}

TEST_F(CgroupTreeTest, RejectsLeafNamesThatCouldEscapeOrCollide) {
  for (const std::string& name : std::vector<std::string>{"", ".", "..", "../x", "a/b", "a..b", ".hidden", "-x",
                                                          "has space", "a\nb", std::string(201, 'a')}) {
    auto leaf = tree_->createLeaf(name);
    ASSERT_FALSE(leaf.ok()) << "accepted '" << name << "'";
    EXPECT_EQ(leaf.error().kind, ErrorKind::kInvalid);
  }
  EXPECT_TRUE(tree_->leaves().empty());
}

TEST_F(CgroupTreeTest, SpawnedProcessStartsInsideItsLeaf) {
  auto leaf = tree_->createLeaf("spawn");
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  Child child = spawnInto(*leaf, {"/bin/sleep", "30"});
  ASSERT_GT(child.spawned.pid, 0);
  ASSERT_GE(child.spawned.pidfd, 0);

  auto pids = cgroupPids(*leaf);
  ASSERT_TRUE(pids.ok()) << pids.error().message;
  EXPECT_EQ(*pids, std::vector<pid_t>{child.spawned.pid});
  EXPECT_EQ(cgroupOf(child.spawned.pid), kernelPathOf(*leaf));
  auto populated = isPopulated(*leaf);
  ASSERT_TRUE(populated.ok());
  EXPECT_TRUE(*populated);
}

TEST_F(CgroupTreeTest, ForkFallbackJoinsTheLeafBeforeExec) {
  auto leaf = tree_->createLeaf("spawn-fork");
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  SpawnRequest request;
  request.argv = {"/bin/sleep", "30"};
  request.cgroup = *leaf;
  auto spawned = spawnProcessWithFork(request);
  ASSERT_TRUE(spawned.ok()) << spawned.error().message;
  Child child{*spawned};
  EXPECT_GE(child.spawned.pidfd, 0);
  EXPECT_EQ(cgroupOf(child.spawned.pid), kernelPathOf(*leaf));
  auto pids = cgroupPids(*leaf);
  ASSERT_TRUE(pids.ok());
  EXPECT_EQ(*pids, std::vector<pid_t>{child.spawned.pid});
}

TEST_F(CgroupTreeTest, SpawnIntoMissingCgroupFails) {
  SpawnRequest request;
  request.argv = {"/bin/true"};
  request.cgroup = tree_->dir() / "no-such-leaf";
  auto spawned = spawnProcess(request);
  ASSERT_FALSE(spawned.ok());
  EXPECT_NE(spawned.error().message.find("no-such-leaf: No such file or directory"), std::string::npos)
      << spawned.error().message;
}

TEST_F(CgroupTreeTest, WatchReportsEmptyAfterKillAndLeafCanThenBeRemoved) {
  auto leaf = tree_->createLeaf("watch");
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  Child child = spawnInto(*leaf, {"/bin/sleep", "30"});
  ASSERT_GT(child.spawned.pid, 0);
  auto watch = CgroupEventsWatch::open(*leaf);
  ASSERT_TRUE(watch.ok()) << watch.error().message;
  auto populated = watch->drainAndCheckPopulated();
  ASSERT_TRUE(populated.ok()) << populated.error().message;
  EXPECT_TRUE(*populated);

  // Populated: rmdir must be refused with EBUSY.
  auto busy = tree_->removeLeaf(*leaf);
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().kind, ErrorKind::kConflict);
  EXPECT_NE(busy.error().message.find("Device or resource busy"), std::string::npos) << busy.error().message;

  ASSERT_TRUE(killCgroup(*leaf).ok());
  pollfd pfd{watch->fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1) << "cgroup.events did not change within 5 s";
  ASSERT_TRUE(waitUntilEmpty(*watch, Clock::now() + 5s));

  pfd = pollfd{child.spawned.pidfd, POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
  auto status = reapIfExited(child.spawned.pidfd, child.spawned.pid);
  ASSERT_TRUE(status.ok()) << status.error().message;
  ASSERT_TRUE(status->has_value());
  EXPECT_EQ((*status)->signal, SIGKILL);
  EXPECT_FALSE((*status)->code.has_value());

  EXPECT_TRUE(tree_->removeLeaf(*leaf).ok());
  auto after = watch->drainAndCheckPopulated();
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().kind, ErrorKind::kNotFound);
}

TEST_F(CgroupTreeTest, PidsAndKillCoverSubCgroupsTheWorkCreated) {
  auto leaf = tree_->createLeaf("nested");
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  ASSERT_TRUE(fs::create_directory(*leaf / "inner"));
  Child outer = spawnInto(*leaf, {"/bin/sleep", "30"});
  Child inner = spawnInto(*leaf / "inner", {"/bin/sleep", "30"});
  auto pids = cgroupPids(*leaf);
  ASSERT_TRUE(pids.ok()) << pids.error().message;
  std::sort(pids->begin(), pids->end());
  std::vector<pid_t> expected{outer.spawned.pid, inner.spawned.pid};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(*pids, expected);

  auto watch = CgroupEventsWatch::open(*leaf);
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(killCgroup(*leaf).ok());
  ASSERT_TRUE(waitUntilEmpty(*watch, Clock::now() + 5s));
  EXPECT_TRUE(allGone(expected, Clock::now() + 5s));
  EXPECT_TRUE(tree_->removeLeaf(*leaf).ok());  // removes inner/ first
}

// The shell forks 100 sleeps: 50 plain children, 25 that setsid, 15 that
// double-fork (re-parented away from the shell) and 10 that do both.
constexpr const char* kEscapeeScript =
    "for i in $(seq 50); do sleep 1000 & done; "
    "for i in $(seq 25); do setsid sleep 1000 & done; "
    "for i in $(seq 15); do (sleep 1000 &); done; "
    "for i in $(seq 10); do (setsid sleep 1000 &); done; "
    "echo ready; wait";

class CgroupTreeKillTest : public CgroupTreeTest, public testing::WithParamInterface<bool> {};

TEST_P(CgroupTreeKillTest, KillsAHundredProcessTreeWithEscapees) {
  const bool by_freezing = GetParam();
  auto leaf = tree_->createLeaf(by_freezing ? "escapees-freeze" : "escapees");
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  Child shell = spawnInto(*leaf, {"/bin/sh", "-c", kEscapeeScript}, out[1]);
  ::close(out[1]);
  const std::string said = readUntil(out[0], "ready", Clock::now() + 10s);
  ::close(out[0]);
  ASSERT_NE(said.find("ready"), std::string::npos) << "the tree did not start within 10 s";

  // Every fork has returned once "ready" is printed: all 101 are in the leaf.
  auto pids = cgroupPids(*leaf);
  ASSERT_TRUE(pids.ok()) << pids.error().message;
  ASSERT_GE(pids->size(), 101U);
  int outside_session = 0;
  for (const pid_t pid : *pids) outside_session += ::getsid(pid) != shell.spawned.pid ? 1 : 0;
  EXPECT_GE(outside_session, 1) << "no setsid escapee: the test would not test escapes";

  auto watch = CgroupEventsWatch::open(*leaf);
  ASSERT_TRUE(watch.ok()) << watch.error().message;
  const auto start = Clock::now();
  auto killed = by_freezing ? killCgroupByFreezing(*leaf) : killCgroup(*leaf);
  ASSERT_TRUE(killed.ok()) << killed.error().message;
  const auto issued = Clock::now();
  ASSERT_TRUE(waitUntilEmpty(*watch, Clock::now() + 5s)) << "still populated 5 s after the kill";
  const auto empty = Clock::now();
  std::cout << (by_freezing ? "[freeze fallback] " : "[cgroup.kill] ") << pids->size() << " processes: kill issued in "
            << std::chrono::duration<double, std::milli>(issued - start).count() << " ms, cgroup empty after "
            << std::chrono::duration<double, std::milli>(empty - start).count() << " ms\n";

  EXPECT_TRUE(allGone(*pids, Clock::now() + 5s));
  EXPECT_TRUE(tree_->removeLeaf(*leaf).ok());
}

INSTANTIATE_TEST_SUITE_P(Kill, CgroupTreeKillTest, testing::Values(false, true),
                         [](const testing::TestParamInfo<bool>& param_info) {
                           return param_info.param ? "FreezeFallback" : "CgroupKill";
                         });

}  // namespace
}  // namespace phonefarm::exec
