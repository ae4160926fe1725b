// spawnProcess without a cgroup v2 leaf (those cases are in cgroup_tree_test):
// errors from the child carry the real errno, pidfd signalling and reaping,
// and what the child inherits: its stdio, its environment, a new session,
// default signal state and no other file descriptor. Runs as any user.
#include "agent/exec/process_spawner.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/exec/work_limits.hpp"

namespace phonefarm::exec {
namespace {

struct Child {
  Spawned spawned;
  ~Child() {
    if (spawned.pidfd < 0) return;
    // A test that failed half-way must not leave a sleep behind.
    (void)signalPidfd(spawned.pidfd, SIGKILL);
    pollfd pfd{spawned.pidfd, POLLIN, 0};
    ::poll(&pfd, 1, 5000);
    (void)reapIfExited(spawned.pidfd, spawned.pid);
    ::close(spawned.pidfd);
  }
};

Child spawnOrFail(SpawnRequest request) {
  auto spawned = spawnProcess(request);
  EXPECT_TRUE(spawned.ok()) << spawned.error().message;
  return Child{spawned.ok() ? *spawned : Spawned{}};
}

// Waits (pidfd readiness, 5 s deadline) for the exit and reaps it.
std::optional<ExitStatus> waitExit(const Child& child) {
  pollfd pfd{child.spawned.pidfd, POLLIN, 0};
  if (::poll(&pfd, 1, 5000) != 1) return std::nullopt;
  auto status = reapIfExited(child.spawned.pidfd, child.spawned.pid);
  return status.ok() ? *status : std::nullopt;
}

// Runs `script` under /bin/sh and returns its stdout.
std::string runShell(const std::string& script, std::vector<std::string> env = {},
                     std::vector<int> blocked_signals = {}) {
  int out[2];
  EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
  SpawnRequest request;
  request.argv = {"/bin/sh", "-c", script};
  request.env = std::move(env);
  request.blocked_signals = std::move(blocked_signals);
  request.stdout_fd = out[1];
  Child child = spawnOrFail(request);
  ::close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  EXPECT_TRUE(waitExit(child).has_value());
  return text;
}

TEST(ProcessSpawnerTest, ExecOfAMissingFileReportsTheChildsErrno) {
  SpawnRequest request;
  request.argv = {"/nonexistent/x"};
  for (auto* spawn : {&spawnProcess, &spawnProcessWithFork}) {
    auto spawned = spawn(request);
    ASSERT_FALSE(spawned.ok());
    EXPECT_EQ(spawned.error().message, "exec /nonexistent/x: No such file or directory");
    EXPECT_EQ(spawned.error().kind, ErrorKind::kNotFound);
  }
  // Exists but has no execute bit (refused even for root).
  char path[] = "/tmp/spawner-test-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  request.argv = {path};
  auto denied = spawnProcess(request);
  ::unlink(path);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().message, std::string("exec ") + path + ": Permission denied");
}

TEST(ProcessSpawnerTest, RejectsMalformedRequests) {
  SpawnRequest empty;
  auto spawned = spawnProcess(empty);
  ASSERT_FALSE(spawned.ok());
  EXPECT_EQ(spawned.error().kind, ErrorKind::kInvalid);

  SpawnRequest bad_env;
  bad_env.argv = {"/bin/true"};
  bad_env.env = {"NOEQUALS"};
  spawned = spawnProcess(bad_env);
  ASSERT_FALSE(spawned.ok());
  EXPECT_EQ(spawned.error().kind, ErrorKind::kInvalid);
}

// The work limits' v1 cgroups (work_limits.hpp): the child is in them when
// it execs, through either clone path. Needs a writable v1 pids hierarchy
// (root on a hybrid host, as on CI).
TEST(ProcessSpawnerTest, ChildJoinsTheExtraCgroupsBeforeExec) {
  std::ifstream cgroup_in("/proc/self/cgroup");
  std::ifstream mounts_in("/proc/self/mountinfo");
  const std::string cgroup_text((std::istreambuf_iterator<char>(cgroup_in)), std::istreambuf_iterator<char>());
  const std::string mounts_text((std::istreambuf_iterator<char>(mounts_in)), std::istreambuf_iterator<char>());
  const auto own = v1CgroupDir(cgroup_text, mounts_text, "pids");
  if (!own || ::geteuid() != 0) GTEST_SKIP() << "no v1 pids hierarchy we may write";
  const std::string name = "phonefarm-spawner-test-" + std::to_string(::getpid());
  const auto dir = *own / name;
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0) << dir;
  for (auto* spawn : {&spawnProcess, &spawnProcessWithFork}) {
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    SpawnRequest request;
    request.argv = {"/bin/cat", "/proc/self/cgroup"};
    request.join_cgroups = {dir};
    request.stdout_fd = out[1];
    auto spawned = spawn(request);
    ::close(out[1]);
    ASSERT_TRUE(spawned.ok()) << spawned.error().message;
    Child child{*spawned};
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    EXPECT_TRUE(waitExit(child).has_value());
    EXPECT_NE(text.find(":pids:" + (std::string(dir.c_str()).substr(std::string("/sys/fs/cgroup/pids").size()))),
              std::string::npos)
        << text;
  }
  EXPECT_EQ(::rmdir(dir.c_str()), 0);

  SpawnRequest missing;
  missing.argv = {"/bin/true"};
  missing.join_cgroups = {"/nonexistent-cgroup"};
  auto refused = spawnProcess(missing);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message, "open /nonexistent-cgroup/cgroup.procs: No such file or directory");
}

TEST(ProcessSpawnerTest, SignalPidfdDeliversSigtermAndReapReportsIt) {
  SpawnRequest request;
  request.argv = {"/bin/sleep", "30"};
  Child child = spawnOrFail(request);
  ASSERT_GE(child.spawned.pidfd, 0);
  auto running = reapIfExited(child.spawned.pidfd, child.spawned.pid);
  ASSERT_TRUE(running.ok()) << running.error().message;
  EXPECT_FALSE(running->has_value());

  ASSERT_TRUE(signalPidfd(child.spawned.pidfd, SIGTERM).ok());
  const auto status = waitExit(child);
  ASSERT_TRUE(status.has_value()) << "no exit within 5 s of SIGTERM";
  EXPECT_EQ(status->signal, SIGTERM);
  EXPECT_FALSE(status->code.has_value());

  // Exited and reaped: the pidfd still names that process, never a new one.
  auto late = signalPidfd(child.spawned.pidfd, SIGTERM);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().message, "pidfd_send_signal(SIGTERM): No such process");
}

TEST(ProcessSpawnerTest, ReapReportsTheExitCode) {
  SpawnRequest request;
  request.argv = {"/bin/sh", "-c", "exit 3"};
  Child child = spawnOrFail(request);
  const auto status = waitExit(child);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code, 3);
  EXPECT_FALSE(status->signal.has_value());
}

TEST(ProcessSpawnerTest, ChildGetsExactlyItsEnvironmentAndStdio) {
  EXPECT_EQ(runShell("echo \"$PHONEFARM_X|${HOME:-unset}\"; echo err >&2", {"PHONEFARM_X=42"}), "42|unset\n");
}

// Waits (5 s deadline) until `pid` is blocked in the system call numbered
// `nr` (the first field of /proc/<pid>/syscall).
bool waitForSyscall(pid_t pid, const std::string& nr) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/syscall");
    std::string first;
    if (in >> first && first == nr) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

TEST(ProcessSpawnerTest, ChildInheritsNoOtherDescriptor) {
  // Deliberately not close-on-exec: close_range in the child must catch it.
  const int leaky = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leaky, 3);
  SpawnRequest request;
  request.argv = {"/bin/sleep", "30"};
  Child child = spawnOrFail(request);
  ::close(leaky);
  ASSERT_GT(child.spawned.pid, 0);
  // The spawn returns at exec, while the dynamic loader may still hold a
  // library open on fd 3: look once sleep is in its clock_nanosleep (230).
  ASSERT_TRUE(waitForSyscall(child.spawned.pid, "230"));
  std::vector<std::string> fds;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(child.spawned.pid) + "/fd")) {
    fds.push_back(entry.path().filename().string());
  }
  std::sort(fds.begin(), fds.end());
  EXPECT_EQ(fds, (std::vector<std::string>{"0", "1", "2"}));
}

TEST(ProcessSpawnerTest, ChildStartsWithDefaultSignalStateWhateverTheAgentHas) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old_pipe {};
  ::sigaction(SIGPIPE, &ignore, &old_pipe);
  sigset_t usr1;
  sigset_t old_mask;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ::sigprocmask(SIG_BLOCK, &usr1, &old_mask);
  const std::string state = runShell("exec grep -E '^Sig(Blk|Ign)' /proc/self/status");
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  EXPECT_EQ(state, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST(ProcessSpawnerTest, RequestedSignalsStayBlockedThroughExec) {
  // What the exec shim relies on: a stop signal sent at any moment of its
  // start stays pending instead of killing it.
  const std::string text = runShell("exec grep -E '^SigBlk' /proc/self/status", {}, {SIGTERM, SIGUSR1});
  // Bit (signo - 1): SIGUSR1 (10) is 0x200, SIGTERM (15) is 0x4000.
  EXPECT_EQ(text, "SigBlk:\t0000000000004200\n");
}

TEST(ProcessSpawnerTest, NewSessionIsOptional) {
  for (const bool new_session : {true, false}) {
    SpawnRequest request;
    request.argv = {"/bin/sleep", "30"};
    request.new_session = new_session;
    Child child = spawnOrFail(request);
    ASSERT_GT(child.spawned.pid, 0);
    if (new_session) {
      EXPECT_EQ(::getsid(child.spawned.pid), child.spawned.pid);
      EXPECT_EQ(::getpgid(child.spawned.pid), child.spawned.pid);
    } else {
      EXPECT_EQ(::getsid(child.spawned.pid), ::getsid(0));
    }
  }
}

}  // namespace
}  // namespace phonefarm::exec
