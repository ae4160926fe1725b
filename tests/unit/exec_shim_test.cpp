// Unit tests for the exec shim and its files: argument parsing, the
// status.json / cancel.json readers and atomic writers, and the shim itself
// run for real. The path of the built agent is not known here, so each shim
// run forks the test process and calls runExecShim in the child, exactly as
// `phonefarm-agent exec-shim` does after parsing. As root (CI) the work runs
// as "nobody"; as non-root it runs as the current user (the shim allows only
// that). The ExecShimUnprivileged tests (root only: they make the caller) start
// the shim as an unused uid holding ambient CAP_SETUID/CAP_SETGID, as the
// agent runs under systemd, and check that the command runs as run_as with
// every capability set empty, or not at all. Waits are on events (pidfd, inotify) with deadlines; the only polled
// state is another process's stopped state, which has no event to wait on.
#include "agent/exec/exec_shim.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/exec/exec_status.hpp"
#include "agent/exec/log_relay.hpp"
#include "agent/exec/signal_names.hpp"

namespace phonefarm::exec {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

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

// ---- the log relay's words ------------------------------------------------------

TEST(LogRelayWords, CapsAreWholeUnitsWhenTheyCanBe) {
  EXPECT_EQ(formatLogCap(64ULL << 20), "64 MiB");
  EXPECT_EQ(formatLogCap(1ULL << 30), "1 GiB");
  EXPECT_EQ(formatLogCap(1536ULL << 20), "1536 MiB");
  EXPECT_EQ(formatLogCap(65536), "64 KiB");
  EXPECT_EQ(formatLogCap(1000), "1000 bytes");
  EXPECT_EQ(formatLogCap(1), "1 byte");
}

TEST(LogRelayWords, TheMarkerIsALineOfItsOwn) {
  EXPECT_EQ(truncationMarker("stdout", 64ULL << 20),
            "\n[phonefarm-agent: stdout truncated at 64 MiB (work.log_max_bytes); the rest is dropped]\n");
}

TEST(LogRelayWords, TheNoteNamesEachStreamThatDroppedBytes) {
  EXPECT_EQ(logTruncationNote(64ULL << 20, 0, 0), std::nullopt);
  EXPECT_EQ(logTruncationNote(64ULL << 20, 123, 0), "stdout truncated at 64 MiB: 123 bytes dropped");
  EXPECT_EQ(logTruncationNote(4096, 0, 1), "stderr truncated at 4 KiB: 1 byte dropped");
  EXPECT_EQ(logTruncationNote(4096, 5, 6),
            "stdout truncated at 4 KiB: 5 bytes dropped; stderr truncated at 4 KiB: 6 bytes dropped");
}

// ---- parseShimArgs ------------------------------------------------------------

TEST(ParseShimArgs, AcceptsAFullCommandLine) {
  auto options = parseShimArgs({"--work-dir", "/var/lib/x/work/1", "--control-dir", "/var/lib/x/exec/1", "--run-as",
                                "phonefarm-work", "--", "/opt/jobs/post.sh", "--flag", "--", "arg"});
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options->control_dir, "/var/lib/x/exec/1");
  EXPECT_EQ(options->work_dir, "/var/lib/x/work/1");
  EXPECT_EQ(options->run_as, "phonefarm-work");
  EXPECT_EQ(options->argv, (std::vector<std::string>{"/opt/jobs/post.sh", "--flag", "--", "arg"}));
  EXPECT_EQ(options->log_max_bytes, kDefaultLogMaxBytes);
}

TEST(ParseShimArgs, TakesTheLogCap) {
  auto options = parseShimArgs(
      {"--control-dir", "/x", "--log-max-bytes", "65536", "--work-dir", "/w", "--run-as", "u", "--", "/bin/true"});
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options->log_max_bytes, 65536u);
  options = parseShimArgs({"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--log-max-bytes",
                           std::to_string(kMaxLogMaxBytes), "--", "/bin/true"});
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options->log_max_bytes, kMaxLogMaxBytes);
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

const std::string kNulDir("/x\0y", 4);
INSTANTIATE_TEST_SUITE_P(
    BadForms, ParseShimArgsRejects,
    ::testing::Values(
        BadArgs{
            "MissingControlDir", {"--work-dir", "/w", "--run-as", "u", "--", "/bin/true"}, "--control-dir is required"},
        BadArgs{"RelativeControlDir",
                {"--control-dir", "x", "--work-dir", "/w", "--run-as", "u", "--", "/bin/true"},
                "absolute"},
        BadArgs{
            "MissingWorkDir", {"--control-dir", "/x", "--run-as", "u", "--", "/bin/true"}, "--work-dir is required"},
        BadArgs{"RelativeWorkDir",
                {"--control-dir", "/x", "--work-dir", "w", "--run-as", "u", "--", "/bin/true"},
                "--work-dir must be an absolute path"},
        BadArgs{"MissingRunAs", {"--control-dir", "/x", "--work-dir", "/w", "--", "/bin/true"}, "--run-as is required"},
        BadArgs{"EmptyRunAs",
                {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "", "--", "/bin/true"},
                "--run-as is required"},
        BadArgs{"NoSeparator", {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u"}, "missing '--'"},
        BadArgs{"NoCommand", {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--"}, "no command"},
        BadArgs{"RelativeCommand",
                {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--", "true"},
                "not an absolute path"},
        // Env values never come as arguments any more (a command line is world-readable).
        BadArgs{"EnvFlag",
                {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--env", "A=1", "--", "/bin/true"},
                "unknown option '--env'"},
        BadArgs{
            "DirWithNul", {"--control-dir", kNulDir, "--work-dir", "/w", "--run-as", "u", "--", "/bin/true"}, "NUL"},
        BadArgs{"UnknownFlag",
                {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--cwd", "/", "--", "/bin/true"},
                "unknown"},
        BadArgs{"FlagWithoutValue", {"--control-dir"}, "needs a value"},
        BadArgs{"DuplicateControlDir",
                {"--control-dir", "/x", "--control-dir", "/y", "--work-dir", "/w", "--run-as", "u", "--", "/bin/true"},
                "twice"},
        BadArgs{"ZeroLogCap",
                {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--log-max-bytes", "0", "--", "/bin/true"},
                "--log-max-bytes must be a number of bytes from 1"},
        BadArgs{
            "NegativeLogCap",
            {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--log-max-bytes", "-1", "--", "/bin/true"},
            "--log-max-bytes must be"},
        BadArgs{
            "SignedLogCap",
            {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--log-max-bytes", "+5", "--", "/bin/true"},
            "--log-max-bytes must be"},
        BadArgs{
            "SuffixedLogCap",
            {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--log-max-bytes", "64M", "--", "/bin/true"},
            "--log-max-bytes must be"},
        BadArgs{"EmptyLogCap",
                {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--log-max-bytes", "", "--", "/bin/true"},
                "--log-max-bytes must be"},
        BadArgs{"HugeLogCap",
                {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--log-max-bytes", "1099511627777", "--",
                 "/bin/true"},
                "--log-max-bytes must be"},
        BadArgs{"OverflowingLogCap",
                {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--log-max-bytes",
                 "99999999999999999999999", "--", "/bin/true"},
                "--log-max-bytes must be"},
        BadArgs{"DuplicateLogCap",
                {"--control-dir", "/x", "--work-dir", "/w", "--run-as", "u", "--log-max-bytes", "1", "--log-max-bytes",
                 "2", "--", "/bin/true"},
                "--log-max-bytes given twice"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

// ---- fixtures -----------------------------------------------------------------

// A fresh control dir and work dir as the agent makes them: the control dir
// the agent's, 0700; the work dir the agent's with run_as's primary group,
// 0770. Both directly under /tmp so the work user can reach its own.
class ExecDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char control[] = "/tmp/exec_shim_test.XXXXXX";
    ASSERT_NE(::mkdtemp(control), nullptr);
    dir_ = control;
    char work[] = "/tmp/exec_shim_work.XXXXXX";
    ASSERT_NE(::mkdtemp(work), nullptr);
    work_ = work;
    const passwd* pw = ::geteuid() == 0 ? ::getpwnam("nobody") : ::getpwuid(::geteuid());
    ASSERT_NE(pw, nullptr);
    run_as_ = pw->pw_name;
    run_as_uid_ = pw->pw_uid;
    run_as_gid_ = pw->pw_gid;
    ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
    if (::geteuid() == 0) {
      ASSERT_EQ(::chown(work_.c_str(), 0, pw->pw_gid), 0);
    }
    ASSERT_EQ(::chmod(work_.c_str(), 0770), 0);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::remove_all(work_, ec);
  }

  fs::path dir_;   // control
  fs::path work_;  // the command's cwd
  std::string run_as_;
  uid_t run_as_uid_ = 0;
  gid_t run_as_gid_ = 0;
};

using ExecStatusFile = ExecDirTest;

TEST_F(ExecStatusFile, RoundTripsThroughTheAtomicWriter) {
  ExecStatus killed{4242, std::nullopt, "SIGKILL", 1'795'000'000'000, 1'795'000'001'500, std::nullopt};
  killed.log_max_bytes = 64ULL << 20;
  killed.stdout_dropped = 1ULL << 40;
  killed.stderr_dropped = 7;
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

TEST_F(ExecStatusFile, LimitHitsRoundTripAndAreAbsentFromAShimThatReadsNone) {
  ExecStatus ended{7, 0, std::nullopt, 1, 2, std::nullopt};
  ASSERT_TRUE(writeExecStatus(dir_, ended));
  auto read = readExecStatus(dir_);
  ASSERT_TRUE(read && read->has_value());
  EXPECT_EQ((*read)->limit_hits, std::nullopt);
  EXPECT_EQ(readFile(dir_ / kStatusFileName).find("limit_hits"), std::string::npos);
  ended.limit_hits = LimitHits{3, 12};
  ASSERT_TRUE(writeExecStatus(dir_, ended));
  read = readExecStatus(dir_);
  ASSERT_TRUE(read && read->has_value());
  EXPECT_EQ(**read, ended);
  const std::string base = R"({"pid": 1, "exit_code": 0, "signal": null, "started_at": 1, "ended_at": 2, )";
  for (const char* field :
       {R"("limit_hits": 3})", R"("limit_hits": {"oom_kills": -1}})", R"("limit_hits": {"pids_refused": "2"}})"}) {
    std::ofstream(dir_ / kStatusFileName, std::ios::trunc) << base << field;
    EXPECT_FALSE(readExecStatus(dir_)) << field;
  }
}

TEST_F(ExecStatusFile, MissingIsNullopt) {
  auto read = readExecStatus(dir_);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_FALSE(read->has_value());
}

TEST_F(ExecStatusFile, TheLogCountsOfAShimBeforeTheRelayAreZero) {
  std::ofstream(dir_ / kStatusFileName)
      << R"({"pid": 1, "exit_code": 0, "signal": null, "started_at": 1, "ended_at": 2})";
  auto read = readExecStatus(dir_);
  ASSERT_TRUE(read && read->has_value());
  EXPECT_EQ((*read)->log_max_bytes, 0u);
  EXPECT_EQ((*read)->stdout_dropped, 0u);
  EXPECT_EQ((*read)->stderr_dropped, 0u);
}

TEST_F(ExecStatusFile, LogCountsOutOfBoundsAreErrors) {
  const std::string base = R"({"pid": 1, "exit_code": 0, "signal": null, "started_at": 1, "ended_at": 2, )";
  for (const char* field : {R"("stdout_dropped": -1})", R"("stderr_dropped": "12"})", R"("stdout_dropped": 1.5})",
                            R"("log_max_bytes": 4611686018427387905})", R"("stderr_dropped": 18446744073709551615})",
                            R"("stdout_dropped": null})"}) {
    std::ofstream(dir_ / kStatusFileName, std::ios::trunc) << base << field;
    auto read = readExecStatus(dir_);
    EXPECT_FALSE(read) << field;
  }
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
  ASSERT_TRUE(writeCancelFile(dir_, notice, 0444));
  notice["reason"] = "second notice";
  ASSERT_TRUE(writeCancelFile(dir_, notice, 0444));  // replaces a read-only file
  EXPECT_EQ(boost::json::parse(readFile(dir_ / kCancelFileName)), boost::json::value(notice));
  EXPECT_FALSE(fs::exists(dir_ / "cancel.json.tmp"));
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / kCancelFileName).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
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

  // `before_shim` runs in the child first (e.g. to become another caller); a
  // non-zero result is the child's exit code, and the shim does not run.
  Shim& startShim(std::vector<std::string> argv, std::string run_as = {},
                  const std::function<int()>& before_shim = {}) {
    ShimOptions options{dir_, work_, run_as.empty() ? run_as_ : run_as, std::move(argv), log_max_bytes_, {}, {}};
    options.limit_hits = limit_hits_;
    EXPECT_TRUE(writeShimEnvFile(dir_, {"PATH=/usr/bin:/bin", "A=1"}));
    if (env_owner_) {
      EXPECT_EQ(::chown((dir_ / kEnvFileName).c_str(), *env_owner_, *env_owner_), 0);
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (before_shim) {
        if (const int code = before_shim(); code != 0) ::_exit(code);
      }
      ::_exit(runExecShim(options));
    }
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
    if (fd < 0 || ::inotify_add_watch(fd, work_.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE) < 0) return false;
    const auto deadline = std::chrono::steady_clock::now() + kEventDeadline;
    bool found = false;
    while (!(found = fs::exists(work_ / name)) && std::chrono::steady_clock::now() < deadline) {
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
    return static_cast<pid_t>(std::atoi(readFile(work_ / name).c_str()));
  }

  std::vector<Shim> shims_;
  std::optional<uid_t> env_owner_;  // the shim's uid, when it is not ours
  std::uint64_t log_max_bytes_ = kDefaultLogMaxBytes;
  std::function<LimitHits()> limit_hits_;  // the job unit shim's reader
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
  // The shim's files, as the agent's user: not the work's to replace.
  for (const char* name : {kStdoutLogName, kStderrLogName, kStatusFileName}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir_ / name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_mode & 07777, 0640u) << name;
    EXPECT_EQ(st.st_uid, ::geteuid()) << name;
  }
  // The env file is read and deleted before the command starts.
  EXPECT_FALSE(fs::exists(dir_ / kEnvFileName));
}

// The job unit's shim reads what the limits did once the command has ended
// (its unit's cgroups go with the unit) and records it in status.json.
TEST_F(ExecShimRun, RecordsTheLimitHitsReadAfterTheCommandEnded) {
  limit_hits_ = [done = work_ / "done"] {
    std::error_code ec;
    return fs::exists(done, ec) ? LimitHits{1, 42} : LimitHits{};
  };
  auto& shim = startShim({"/bin/sh", "-c", "echo $$ > done.tmp; mv done.tmp done; exit 9"});
  expectShimExit(shim, kShimExitOk);
  const ExecStatus status = readStatus();
  EXPECT_EQ(status.exit_code, 9);
  EXPECT_EQ(status.limit_hits, (LimitHits{1, 42}));
}

TEST_F(ExecShimRun, WithoutAReaderStatusJsonHasNoLimitHits) {
  auto& shim = startShim({"/bin/true"});
  expectShimExit(shim, kShimExitOk);
  EXPECT_EQ(readStatus().limit_hits, std::nullopt);
}

// More than the relay's pipe holds goes to each stream, so a relay that
// stopped reading at the cap would block the command for good.
TEST_F(ExecShimRun, CapsEachLogEndsItWithTheMarkerAndCountsTheDroppedBytes) {
  log_max_bytes_ = 4096;
  auto& shim = startShim({"/bin/sh", "-c",
                          "echo first; head -c 3000000 /dev/zero; echo first-err >&2; head -c 5000 /dev/zero >&2; "
                          "echo $$ > done.tmp; mv done.tmp done; exit 0"});
  expectShimExit(shim, kShimExitOk);
  const ExecStatus status = readStatus();
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_EQ(status.signal, std::nullopt);
  EXPECT_EQ(status.log_max_bytes, 4096u);
  EXPECT_EQ(status.stdout_dropped, 6u + 3000000u - 4096u);
  EXPECT_EQ(status.stderr_dropped, 10u + 5000u - 4096u);
  EXPECT_TRUE(fs::exists(work_ / "done"));
  const std::string out = readFile(dir_ / kStdoutLogName);
  EXPECT_EQ(out, "first\n" + std::string(4096 - 6, '\0') + truncationMarker("stdout", 4096));
  const std::string err = readFile(dir_ / kStderrLogName);
  EXPECT_EQ(err, "first-err\n" + std::string(4096 - 10, '\0') + truncationMarker("stderr", 4096));
}

TEST_F(ExecShimRun, OutputOfExactlyTheCapHasNoMarker) {
  log_max_bytes_ = 4096;
  auto& shim = startShim({"/bin/sh", "-c", "head -c 4096 /dev/zero | tr '\\0' x"});
  expectShimExit(shim, kShimExitOk);
  EXPECT_EQ(readStatus().stdout_dropped, 0u);
  EXPECT_EQ(readFile(dir_ / kStdoutLogName), std::string(4096, 'x'));
}

// A process the command leaves behind holding its stdout must not keep the
// shim (and so the status and the end of the relay) waiting for it.
TEST_F(ExecShimRun, DoesNotWaitForWhatTheCommandLeftHoldingThePipes) {
  auto& shim = startShim({"/bin/sh", "-c", "sleep 30 & echo $! > left.tmp; mv left.tmp left; echo bye; exit 4"});
  const pid_t left = readPidFile("left");
  const auto started = std::chrono::steady_clock::now();
  expectShimExit(shim, kShimExitOk);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "the shim waited for the leftover sleep";
  EXPECT_EQ(readStatus().exit_code, 4);
  EXPECT_EQ(readFile(dir_ / kStdoutLogName), "bye\n");
  if (left > 0) ::kill(left, SIGKILL);
}

TEST_F(ExecShimRun, RunsAsTheWorkUserWithoutRootGroups) {
  auto& shim = startShim({"/bin/sh", "-c", "id -u > uid.txt; id -G > groups.txt"});
  expectShimExit(shim, kShimExitOk);
  EXPECT_EQ(readStatus().exit_code, 0);
  EXPECT_EQ(readFile(work_ / "uid.txt"), std::to_string(run_as_uid_) + "\n");
  if (::geteuid() == 0) {
    EXPECT_EQ(readFile(work_ / "uid.txt"), "65534\n");
  }
  std::istringstream groups(readFile(work_ / "groups.txt"));
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
  EXPECT_EQ(readFile(work_ / "got"), signalName(sig) + "\n");
}

INSTANTIATE_TEST_SUITE_P(EveryStopSignal, ExecShimForwards,
                         ::testing::Values(SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH,
                                           SIGPWR),
                         [](const auto& param_info) { return signalName(param_info.param); });

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
  EXPECT_TRUE(fs::exists(work_ / "got"));
}

// ---- an unprivileged caller holding capabilities (the agent under systemd) ----

// A uid and gid that no user or group has, so nothing on the machine is theirs.
uid_t unusedId() {
  for (uid_t id = 61000; id < 62000; ++id) {
    if (::getpwuid(id) == nullptr && ::getgrgid(id) == nullptr) return id;
  }
  return 0;
}

std::uint64_t capMask(const std::vector<int>& caps) {
  std::uint64_t mask = 0;
  for (const int cap : caps) mask |= std::uint64_t{1} << cap;
  return mask;
}

// In the forked child: become `uid`:`gid` with supplementary `groups`, holding
// exactly `caps` as inheritable, permitted, effective and ambient capabilities,
// the way systemd starts User=phonefarm with AmbientCapabilities=. Returns 0,
// or a distinct exit code naming the step that failed.
int becomeCallerWithCaps(uid_t uid, gid_t gid, const std::vector<gid_t>& groups, const std::vector<int>& caps) {
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return 201;
  if (::setgroups(groups.size(), groups.data()) != 0) return 202;
  if (::setresgid(gid, gid, gid) != 0) return 203;
  if (::setresuid(uid, uid, uid) != 0) return 204;  // keeps the permitted set, empties the effective one
  const std::uint64_t mask = capMask(caps);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int i = 0; i < 2; ++i) {
    const auto word = static_cast<std::uint32_t>(mask >> (32 * i));
    data[i].effective = data[i].permitted = data[i].inheritable = word;
  }
  if (::syscall(SYS_capset, &header, data) != 0) return 205;
  for (const int cap : caps) {
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) return 206;
  }
  if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return 207;
  return 0;
}

// A seccomp filter under which capset() "succeeds" without changing anything:
// a shim that trusted the call would run the work with the caller's
// capabilities. (No arch check: the test process makes native calls only.)
int fakeCapsetSuccess() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_capset, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 211;
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) return 212;
  return 0;
}

// A seccomp filter refusing splice() with EPERM, as a sandbox may: the log
// relay must cap by read and write then.
int refuseSplice() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_splice, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 211;
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) return 212;
  return 0;
}

TEST_F(ExecShimRun, CapsTheLogsByReadAndWriteWhereSpliceIsRefused) {
  log_max_bytes_ = 4096;
  auto& shim = startShim({"/bin/sh", "-c", "echo first; head -c 3000000 /dev/zero; echo err >&2"}, {}, refuseSplice);
  expectShimExit(shim, kShimExitOk);
  const ExecStatus status = readStatus();
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_EQ(status.stdout_dropped, 6u + 3000000u - 4096u);
  EXPECT_EQ(status.stderr_dropped, 0u);
  EXPECT_EQ(readFile(dir_ / kStdoutLogName),
            "first\n" + std::string(4096 - 6, '\0') + truncationMarker("stdout", 4096));
  EXPECT_EQ(readFile(dir_ / kStderrLogName), "err\n");
}

// The directories as an unprivileged agent makes them (executor_launch.cpp):
// the control dir its own, 0700; the work dir its own with run_as's group.
class ExecShimUnprivileged : public ExecShimRun {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "needs root to make an unprivileged caller (CI runs unit tests as root)";
    ExecShimRun::SetUp();
    agent_id_ = unusedId();
    ASSERT_NE(agent_id_, 0u) << "no unused uid in 61000-61999";
    ASSERT_EQ(::chown(dir_.c_str(), agent_id_, agent_id_), 0);
    ASSERT_EQ(::chown(work_.c_str(), agent_id_, run_as_gid_), 0);
    env_owner_ = agent_id_;
  }

  // The shim's fd 2 before it redirects stdio: where its refusals go until
  // then; afterwards they are in stderr.log.
  std::function<int()> asAgent(const std::vector<int>& caps, bool fake_capset = false) {
    const fs::path errors = work_ / "shim-errors.txt";
    return [this, caps, fake_capset, errors] {
      const int fd = ::open(errors.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0 || ::dup2(fd, STDERR_FILENO) < 0) return 200;
      // The agent's groups: its own and run_as's (sysusers `m phonefarm phonefarm-work`).
      if (const int code = becomeCallerWithCaps(agent_id_, agent_id_, {run_as_gid_}, caps); code != 0) return code;
      return fake_capset ? fakeCapsetSuccess() : 0;
    };
  }

  std::string shimErrors() { return readFile(work_ / "shim-errors.txt") + readFile(dir_ / kStderrLogName); }

  uid_t agent_id_ = 0;
};

constexpr const char* kZeroCaps = "0000000000000000";

TEST_F(ExecShimUnprivileged, RunsTheCommandAsRunAsWithEveryCapabilitySetEmpty) {
  auto& shim = startShim({"/bin/grep", "-E", "^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Amb)):", "/proc/self/status"}, {},
                         asAgent({CAP_SETUID, CAP_SETGID, CAP_KILL}));
  expectShimExit(shim, kShimExitOk);
  EXPECT_EQ(shimErrors(), "");
  EXPECT_EQ(readStatus().exit_code, 0);
  const std::string status = readFile(dir_ / kStdoutLogName);
  const std::string uid = std::to_string(run_as_uid_), gid = std::to_string(run_as_gid_);
  EXPECT_THAT(status, HasSubstr("Uid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid + "\n"));
  EXPECT_THAT(status, HasSubstr("Gid:\t" + gid + "\t" + gid + "\t" + gid + "\t" + gid + "\n"));
  EXPECT_THAT(status, Not(HasSubstr(std::to_string(agent_id_))));  // not in any id, not in Groups
  // Without the shim's own drop the ambient set would survive both setuid()
  // and execve(), and show up in all four.
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapAmb"}) {
    EXPECT_THAT(status, HasSubstr(std::string(set) + ":\t" + kZeroCaps + "\n")) << set;
  }
  // Its files are the agent's: the work can write its logs through the
  // descriptors it got, nothing more.
  for (const char* name : {kStdoutLogName, kStatusFileName}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir_ / name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_uid, agent_id_) << name;
    EXPECT_EQ(st.st_mode & 07777, 0640u) << name;
  }
}

// The supervisor is not the work's: the work can neither signal its shim,
// nor enter, list or write the control dir, so the outcome the shim records
// is what waitid() said, whatever the work tried.
TEST_F(ExecShimUnprivileged, TheWorkCannotKillItsShimOrForgeItsStatus) {
  const std::string attack =
      "ls \"$1\" >/dev/null 2>&1 && echo listed || echo denied-list; "
      "(echo '{\"pid\":1,\"exit_code\":0,\"signal\":null,\"started_at\":1,\"ended_at\":2}' > \"$1/status.json\") "
      "2>/dev/null && echo wrote || echo denied-write; "
      "kill -9 $PPID 2>/dev/null && echo killed || echo denied-kill; "
      "grep '^CapEff' /proc/$PPID/status; exit 3";
  auto& shim =
      startShim({"/bin/sh", "-c", attack, "sh", dir_.string()}, {}, asAgent({CAP_SETUID, CAP_SETGID, CAP_KILL}));
  expectShimExit(shim, kShimExitOk);
  EXPECT_EQ(shimErrors(), "");
  const ExecStatus status = readStatus();
  EXPECT_EQ(status.exit_code, 3);
  EXPECT_EQ(status.signal, std::nullopt);
  const std::string out = readFile(dir_ / kStdoutLogName);
  EXPECT_THAT(out, HasSubstr("denied-list\n"));
  EXPECT_THAT(out, HasSubstr("denied-write\n"));
  EXPECT_THAT(out, HasSubstr("denied-kill\n"));
  // After the fork the shim holds CAP_KILL alone (bit 5), to forward signals.
  EXPECT_THAT(out, HasSubstr("CapEff:\t0000000000000020\n"));
}

TEST_F(ExecShimUnprivileged, TheWorkCannotSignalTheAgentsUid) {
  // A process of the agent's uid, with no capability: the work must not be
  // able to signal it (it could, were the uid or CAP_KILL left over).
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  const pid_t target = ::fork();
  if (target == 0) {
    if (becomeCallerWithCaps(agent_id_, agent_id_, {}, {}) != 0) ::_exit(1);
    if (::write(ready[1], "r", 1) != 1) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  const int target_fd = pidfdOpen(target);
  ASSERT_GE(target_fd, 0);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the target did not become uid " << agent_id_;
  ::close(ready[0]);
  auto& shim = startShim({"/bin/sh", "-c", "kill -0 " + std::to_string(target) + " && echo signalled || echo refused"},
                         {}, asAgent({CAP_SETUID, CAP_SETGID, CAP_KILL}));
  expectShimExit(shim, kShimExitOk);
  pidfdSignal(target_fd, SIGKILL);
  ::waitpid(target, nullptr, 0);
  ::close(target_fd);
  EXPECT_THAT(readFile(dir_ / kStdoutLogName), HasSubstr("refused\n"));
}

TEST_F(ExecShimUnprivileged, RefusesWhenCapabilitiesSurviveTheDrop) {
  auto& shim =
      startShim({"/bin/sh", "-c", "echo ran > ran.txt"}, {}, asAgent({CAP_SETUID, CAP_SETGID}, /*fake_capset=*/true));
  expectShimExit(shim, kShimExitRefused);
  EXPECT_THAT(shimErrors(), HasSubstr("capabilities left after dropping them: CapInh=c0, CapPrm=c0, CapEff=c0\n"));
  EXPECT_FALSE(fs::exists(work_ / "ran.txt")) << "the command ran";
  EXPECT_FALSE(fs::exists(dir_ / kStatusFileName));
}

TEST_F(ExecShimUnprivileged, RefusesWithoutCapSetuid) {
  auto& shim = startShim({"/bin/sh", "-c", "echo ran > ran.txt"}, {}, asAgent({CAP_SETGID}));
  expectShimExit(shim, kShimExitRefused);
  EXPECT_THAT(shimErrors(), HasSubstr("running as uid " + std::to_string(agent_id_) +
                                      ", cannot switch to run_as user '" + run_as_ + "'"));
  EXPECT_THAT(shimErrors(), HasSubstr("setuid " + std::to_string(run_as_uid_) + ": Operation not permitted"));
  EXPECT_FALSE(fs::exists(work_ / "ran.txt")) << "the command ran";
  EXPECT_FALSE(fs::exists(dir_ / kStatusFileName));
}

TEST_F(ExecShimUnprivileged, StillRefusesRoot) {
  auto& shim = startShim({"/bin/true"}, "root", asAgent({CAP_SETUID, CAP_SETGID}));
  expectShimExit(shim, kShimExitRefused);
  EXPECT_THAT(shimErrors(), HasSubstr("refusing to run work as root"));
  EXPECT_FALSE(fs::exists(dir_ / kStatusFileName));
}

}  // namespace
}  // namespace phonefarm::exec
