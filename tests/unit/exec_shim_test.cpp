// Unit tests for the exec shim and its files: argument parsing, the
// status.json / cancel.json readers and atomic writers, and the shim itself
// run for real. The path of the built agent is not known here, so each shim
// run forks the test process and calls runExecShim in the child, exactly as
// `phonefarm-agent exec-shim` does after parsing. As root (CI) the work runs
// as "nobody"; as non-root it runs as the current user (the shim allows only
// that). Waits are on events (pidfd, inotify) with deadlines; the only polled
// state is another process's stopped state, which has no event to wait on.
#include "agent/exec/exec_shim.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/exec/exec_status.hpp"
#include "agent/exec/signal_names.hpp"

namespace phonefarm::exec {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr auto kEventDeadline = 5s;
constexpr auto kShimDeadline = 15s;  // watchdog: a hung shim fails the test instead of hanging it

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfdSignal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- signal names -----------------------------------------------------------

TEST(SignalNames, NamesAndNumbersRoundTrip) {
  EXPECT_EQ(signalName(SIGKILL), "SIGKILL");
  EXPECT_EQ(signalName(SIGTERM), "SIGTERM");
  EXPECT_EQ(signalName(SIGPWR), "SIGPWR");
  EXPECT_EQ(signalNumber("SIGWINCH"), SIGWINCH);
  for (int sig = 1; sig < SIGRTMIN; ++sig) {
    if (auto number = signalNumber(signalName(sig))) {
      EXPECT_EQ(*number, sig) << signalName(sig);
    }
  }
  EXPECT_EQ(signalNumber("TERM"), std::nullopt);
  EXPECT_EQ(signalNumber("sigterm"), std::nullopt);
  EXPECT_EQ(signalNumber("none"), std::nullopt);
  EXPECT_EQ(signalName(SIGRTMIN + 2), "SIGRTMIN+2");
}

// ---- parseShimArgs ------------------------------------------------------------

TEST(ParseShimArgs, AcceptsAFullCommandLine) {
  auto options = parseShimArgs({"--env", "A=1", "--exec-dir", "/var/lib/x/exec/1", "--run-as", "phonefarm-work",
                                "--env", "B=x=y", "--", "/opt/jobs/post.sh", "--flag", "--", "arg"});
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options->exec_dir, "/var/lib/x/exec/1");
  EXPECT_EQ(options->run_as, "phonefarm-work");
  EXPECT_EQ(options->env, (std::vector<std::string>{"A=1", "B=x=y"}));
  EXPECT_EQ(options->argv, (std::vector<std::string>{"/opt/jobs/post.sh", "--flag", "--", "arg"}));
}

struct BadArgs {
  const char* name;
  std::vector<std::string> args;
  const char* message;
};

class ParseShimArgsRejects : public ::testing::TestWithParam<BadArgs> {};

TEST_P(ParseShimArgsRejects, WithAClearMessage) {
  auto options = parseShimArgs(GetParam().args);
  ASSERT_FALSE(options);
  EXPECT_EQ(options.error().kind, ErrorKind::kInvalid);
  EXPECT_THAT(options.error().message, HasSubstr(GetParam().message));
}

const std::string kNulEnv("A=\0b", 4);
INSTANTIATE_TEST_SUITE_P(
    BadForms, ParseShimArgsRejects,
    ::testing::Values(
        BadArgs{"MissingExecDir", {"--run-as", "u", "--", "/bin/true"}, "--exec-dir is required"},
        BadArgs{"RelativeExecDir", {"--exec-dir", "x", "--run-as", "u", "--", "/bin/true"}, "absolute"},
        BadArgs{"MissingRunAs", {"--exec-dir", "/x", "--", "/bin/true"}, "--run-as is required"},
        BadArgs{"EmptyRunAs", {"--exec-dir", "/x", "--run-as", "", "--", "/bin/true"}, "--run-as is required"},
        BadArgs{"NoSeparator", {"--exec-dir", "/x", "--run-as", "u"}, "missing '--'"},
        BadArgs{"NoCommand", {"--exec-dir", "/x", "--run-as", "u", "--"}, "no command"},
        BadArgs{"RelativeCommand", {"--exec-dir", "/x", "--run-as", "u", "--", "true"}, "not an absolute path"},
        BadArgs{"EnvWithoutEquals", {"--exec-dir", "/x", "--run-as", "u", "--env", "A", "--", "/bin/true"}, "K=V"},
        BadArgs{"EnvWithoutKey", {"--exec-dir", "/x", "--run-as", "u", "--env", "=1", "--", "/bin/true"}, "K=V"},
        BadArgs{"EnvWithNul", {"--exec-dir", "/x", "--run-as", "u", "--env", kNulEnv, "--", "/bin/true"}, "NUL"},
        BadArgs{"UnknownFlag", {"--exec-dir", "/x", "--run-as", "u", "--cwd", "/", "--", "/bin/true"}, "unknown"},
        BadArgs{"FlagWithoutValue", {"--exec-dir"}, "needs a value"},
        BadArgs{
            "DuplicateExecDir", {"--exec-dir", "/x", "--exec-dir", "/y", "--run-as", "u", "--", "/bin/true"}, "twice"}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- fixtures -----------------------------------------------------------------

// A fresh exec dir as the agent makes it: owned by the work user, 0750. It is
// directly under /tmp so the work user can reach it.
class ExecDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/exec_shim_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const passwd* pw = ::geteuid() == 0 ? ::getpwnam("nobody") : ::getpwuid(::geteuid());
    ASSERT_NE(pw, nullptr);
    run_as_ = pw->pw_name;
    run_as_uid_ = pw->pw_uid;
    if (::geteuid() == 0) {
      ASSERT_EQ(::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid), 0);
    }
    ASSERT_EQ(::chmod(dir_.c_str(), 0750), 0);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path dir_;
  std::string run_as_;
  uid_t run_as_uid_ = 0;
};

using ExecStatusFile = ExecDirTest;

TEST_F(ExecStatusFile, RoundTripsThroughTheAtomicWriter) {
  const ExecStatus killed{4242, std::nullopt, "SIGKILL", 1'795'000'000'000, 1'795'000'001'500, std::nullopt};
  ASSERT_TRUE(writeExecStatus(dir_, killed));
  auto read = readExecStatus(dir_);
  ASSERT_TRUE(read) << read.error().message;
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ(**read, killed);

  const ExecStatus failed{7, 127, std::nullopt, 1, 2, "exec /x: No such file or directory"};
  ASSERT_TRUE(writeExecStatus(dir_, failed));  // replaces the previous one
  read = readExecStatus(dir_);
  ASSERT_TRUE(read && read->has_value());
  EXPECT_EQ(**read, failed);
  EXPECT_FALSE(fs::exists(dir_ / "status.json.tmp"));
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / kStatusFileName).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

TEST_F(ExecStatusFile, MissingIsNullopt) {
  auto read = readExecStatus(dir_);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_FALSE(read->has_value());
}

TEST_F(ExecStatusFile, GarbageAndWrongTypesAreErrors) {
  for (const char* text : {"not json", "[1,2]", "{\"pid\": 1}",
                           R"({"pid": "1", "exit_code": 0, "signal": null, "started_at": 1, "ended_at": 2})",
                           R"({"pid": 1, "exit_code": 1.5, "signal": null, "started_at": 1, "ended_at": 2})",
                           R"({"pid": 1, "exit_code": null, "signal": 9, "started_at": 1, "ended_at": 2})"}) {
    std::ofstream(dir_ / kStatusFileName, std::ios::trunc) << text;
    auto read = readExecStatus(dir_);
    EXPECT_FALSE(read) << text;
  }
}

TEST_F(ExecStatusFile, CancelFileIsWrittenAtomicallyAndReadable) {
  boost::json::object notice{
      {"reason", "operator"}, {"strategy", "soft"}, {"requested_at", "2026-11-28T10:26:51.123Z"}};
  ASSERT_TRUE(writeCancelFile(dir_, notice));
  notice["reason"] = "second notice";
  ASSERT_TRUE(writeCancelFile(dir_, notice));
  EXPECT_EQ(boost::json::parse(readFile(dir_ / kCancelFileName)), boost::json::value(notice));
  EXPECT_FALSE(fs::exists(dir_ / "cancel.json.tmp"));
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / kCancelFileName).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

// Runs shims in forked children and reaps them through pidfds.
class ExecShimRun : public ExecDirTest {
 protected:
  struct Shim {
    pid_t pid = -1;
    int pidfd = -1;
  };

  void TearDown() override {
    for (auto& shim : shims_) {
      if (shim.pidfd >= 0) waitShim(shim, 0ms);  // kills one a failed assertion left running
    }
    ExecDirTest::TearDown();
  }

  Shim& startShim(std::vector<std::string> argv, std::string run_as = {}) {
    ShimOptions options{dir_, run_as.empty() ? run_as_ : run_as, {"PATH=/usr/bin:/bin", "A=1"}, std::move(argv)};
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(runExecShim(options));
    shims_.push_back(Shim{pid, pidfdOpen(pid)});
    return shims_.back();
  }

  // The shim's wait status; -1 if it outlived the deadline (it is killed then).
  int waitShim(Shim& shim, std::chrono::milliseconds timeout = kShimDeadline) {
    pollfd pfd{shim.pidfd, POLLIN, 0};
    int ready = 0;
    do {
      ready = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    } while (ready < 0 && errno == EINTR);
    if (ready == 0) pidfdSignal(shim.pidfd, SIGKILL);
    int status = 0;
    ::waitpid(shim.pid, &status, 0);
    ::close(std::exchange(shim.pidfd, -1));
    return ready == 0 ? -1 : status;
  }

  void expectShimExit(Shim& shim, int code) {
    const int status = waitShim(shim);
    ASSERT_NE(status, -1) << "shim still running after the deadline";
    ASSERT_TRUE(WIFEXITED(status)) << "shim died from " << signalName(WTERMSIG(status));
    EXPECT_EQ(WEXITSTATUS(status), code);
  }

  ExecStatus readStatus() {
    auto status = readExecStatus(dir_);
    if (!status) ADD_FAILURE() << status.error().message;
    if (status && !status->has_value()) ADD_FAILURE() << "no status.json";
    return status && status->has_value() ? **status : ExecStatus{};
  }

  // Commands publish files by rename, so a file is complete once it appears.
  bool waitForFile(const std::string& name) {
    const int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (fd < 0 || ::inotify_add_watch(fd, dir_.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE) < 0) return false;
    const auto deadline = std::chrono::steady_clock::now() + kEventDeadline;
    bool found = false;
    while (!(found = fs::exists(dir_ / name)) && std::chrono::steady_clock::now() < deadline) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd pfd{fd, POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(std::max(left.count(), std::int64_t{1})));
      char events[4096];
      while (::read(fd, events, sizeof events) > 0) {
      }
    }
    ::close(fd);
    return found;
  }

  pid_t readPidFile(const std::string& name) {
    EXPECT_TRUE(waitForFile(name)) << name << " did not appear";
    return static_cast<pid_t>(std::atoi(readFile(dir_ / name).c_str()));
  }

  std::vector<Shim> shims_;
};

// The command writes its pid via rename once it runs, then loops a bounded
// time (so a failed test leaves no process behind for long).
std::string readyThenLoop(const std::string& setup) {
  return setup +
         "echo $$ > pid.tmp && mv pid.tmp pid; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 1";
}

TEST_F(ExecShimRun, RecordsExitCodeAndLogs) {
  auto& shim = startShim({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  expectShimExit(shim, kShimExitOk);
  const ExecStatus status = readStatus();
  EXPECT_GT(status.pid, 0);
  EXPECT_EQ(status.exit_code, 3);
  EXPECT_EQ(status.signal, std::nullopt);
  EXPECT_EQ(status.error, std::nullopt);
  EXPECT_GT(status.started_at, 0);
  EXPECT_LE(status.started_at, status.ended_at);
  EXPECT_EQ(readFile(dir_ / kStdoutLogName), "out\n");
  EXPECT_EQ(readFile(dir_ / kStderrLogName), "err\n");
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / kStdoutLogName).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_uid, run_as_uid_);
}

TEST_F(ExecShimRun, RunsAsTheWorkUserWithoutRootGroups) {
  auto& shim = startShim({"/bin/sh", "-c", "id -u > uid.txt; id -G > groups.txt"});
  expectShimExit(shim, kShimExitOk);
  EXPECT_EQ(readStatus().exit_code, 0);
  EXPECT_EQ(readFile(dir_ / "uid.txt"), std::to_string(run_as_uid_) + "\n");
  if (::geteuid() == 0) {
    EXPECT_EQ(readFile(dir_ / "uid.txt"), "65534\n");
  }
  std::istringstream groups(readFile(dir_ / "groups.txt"));
  for (std::string gid; groups >> gid;) EXPECT_NE(gid, "0");
}

TEST_F(ExecShimRun, GivesTheCommandExactlyItsEnvAndCleanSignalState) {
  auto& shim = startShim({"/usr/bin/env"});
  expectShimExit(shim, kShimExitOk);
  EXPECT_EQ(readFile(dir_ / kStdoutLogName), "PATH=/usr/bin:/bin\nA=1\n");
  // The shim itself blocks the forwarded signals and ignores SIGPIPE.
  auto& grep = startShim({"/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"});
  expectShimExit(grep, kShimExitOk);
  EXPECT_THAT(readFile(dir_ / kStdoutLogName), HasSubstr("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"));
}

TEST_F(ExecShimRun, MissingExecutableIs127WithTheReason) {
  auto& shim = startShim({"/nonexistent/phonefarm-missing", "x"});
  expectShimExit(shim, kShimExitOk);
  const ExecStatus status = readStatus();
  EXPECT_EQ(status.exit_code, 127);
  EXPECT_EQ(status.signal, std::nullopt);
  EXPECT_EQ(status.error, "exec /nonexistent/phonefarm-missing: No such file or directory");
}

TEST_F(ExecShimRun, CommandKilledBySigkillRecordsTheSignal) {
  auto& shim = startShim({"/bin/sh", "-c", readyThenLoop("")});
  const pid_t command = readPidFile("pid");
  const int command_fd = pidfdOpen(command);
  ASSERT_GE(command_fd, 0);
  ASSERT_EQ(pidfdSignal(command_fd, SIGKILL), 0);
  ::close(command_fd);
  expectShimExit(shim, kShimExitOk);
  const ExecStatus status = readStatus();
  EXPECT_EQ(status.pid, command);
  EXPECT_EQ(status.signal, "SIGKILL");
  EXPECT_EQ(status.exit_code, std::nullopt);
}

TEST_F(ExecShimRun, RefusesRootWith125AndNoStatus) {
  auto& shim = startShim({"/bin/true"}, "root");
  expectShimExit(shim, kShimExitRefused);
  EXPECT_FALSE(fs::exists(dir_ / kStatusFileName));
}

TEST_F(ExecShimRun, RefusesAnUnknownUserWith125) {
  auto& shim = startShim({"/bin/true"}, "phonefarm-no-such-user");
  expectShimExit(shim, kShimExitRefused);
  EXPECT_FALSE(fs::exists(dir_ / kStatusFileName));
}

// The agent's stop notice: the stop signal, then SIGCONT, both to the shim.
class ExecShimForwards : public ExecShimRun, public ::testing::WithParamInterface<int> {};

TEST_P(ExecShimForwards, StopSignalToTheCommandAndSurvivesIt) {
  const int sig = GetParam();
  const std::string trap =
      "trap 'echo " + signalName(sig) + " > got.tmp; mv got.tmp got; exit 0' " + std::to_string(sig) + "; ";
  auto& shim = startShim({"/bin/sh", "-c", readyThenLoop(trap)});
  const pid_t command = readPidFile("pid");
  ASSERT_EQ(pidfdSignal(shim.pidfd, sig), 0);
  ASSERT_EQ(pidfdSignal(shim.pidfd, SIGCONT), 0);
  expectShimExit(shim, kShimExitOk);  // exited normally: it did not die from the signal
  const ExecStatus status = readStatus();
  EXPECT_EQ(status.pid, command);
  EXPECT_EQ(status.exit_code, 0);  // the trap's exit, so the command got the signal
  EXPECT_EQ(status.signal, std::nullopt);
  EXPECT_EQ(readFile(dir_ / "got"), signalName(sig) + "\n");
}

INSTANTIATE_TEST_SUITE_P(EveryStopSignal, ExecShimForwards,
                         ::testing::Values(SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH,
                                           SIGPWR),
                         [](const auto& info) { return signalName(info.param); });

// Stopped state of a process that is not our child: no event reports it, so
// this is the one short-interval poll, under a deadline.
bool waitUntilStopped(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + kEventDeadline;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
    const auto paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'T') return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

TEST_F(ExecShimRun, ForwardedSigcontLetsAStoppedCommandHandleTheNotice) {
  auto& shim = startShim({"/bin/sh", "-c", readyThenLoop("trap 'echo got > got.tmp; mv got.tmp got; exit 0' TERM; ")});
  const pid_t command = readPidFile("pid");
  const int command_fd = pidfdOpen(command);
  ASSERT_GE(command_fd, 0);
  ASSERT_EQ(pidfdSignal(command_fd, SIGSTOP), 0);
  ::close(command_fd);
  ASSERT_TRUE(waitUntilStopped(command));
  ASSERT_EQ(pidfdSignal(shim.pidfd, SIGTERM), 0);
  ASSERT_EQ(pidfdSignal(shim.pidfd, SIGCONT), 0);
  expectShimExit(shim, kShimExitOk);
  EXPECT_EQ(readStatus().exit_code, 0);
  EXPECT_TRUE(fs::exists(dir_ / "got"));
}

}  // namespace
}  // namespace phonefarm::exec
