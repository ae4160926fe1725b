// The executor against the real agent: real work as `nobody` in real cgroups,
// the three cancel strategies on executing work, timeouts, and an agent that
// is killed and restarted while work runs or an escalation is pending.
#include <pwd.h>
#include <sys/stat.h>

#include "tests/integration/work_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

class Executor : public WorkFixture {
 protected:
  // A job that records its pid, then waits (up to an hour) for out/<name>.go
  // and exits with the code given as $2.
  std::string waitingJob() const {
    return writeJob("wait.sh",
                    "#!/bin/sh\n"
                    "echo $$ > \"$1.pid\"\n"
                    "while [ ! -e \"$1.go\" ]; do sleep 0.05; done\n"
                    "exit \"$2\"\n");
  }
  // A tree of 100 processes: 33 children, 33 setsid escapees, 33 double-forked
  // setsid orphans, plus the script; every pid lands in $1.pids.
  std::string treeJob() const {
    return writeJob("tree.sh",
                    "#!/bin/sh\n"
                    "out=\"$1.pids\"\n"
                    "echo $$ >> \"$out\"\n"
                    "i=0\n"
                    "while [ $i -lt 33 ]; do\n"
                    "  sleep 3600 & echo $! >> \"$out\"\n"
                    "  setsid sleep 3600 & echo $! >> \"$out\"\n"
                    "  ( setsid sh -c 'sleep 3600 & echo $! >> \"$0\"' \"$out\" & )\n"
                    "  i=$((i+1))\n"
                    "done\n"
                    "wait\n");
  }
  std::string out(const std::string& name) const { return (outDir() / name).string(); }

  std::vector<pid_t> waitForPids(const std::string& name, std::size_t count) {
    auto text = waitForFile(outDir() / (name + ".pids"),
                            [count](const std::string& t) { return parsePids(t).size() >= count; });
    return parsePids(text);
  }

  HttpClient::Response cancel(const std::string& process_id, const std::string& strategy, int force_after = 10) {
    return call("POST", "/processes/" + process_id + "/cancel", cancelBody(strategy, force_after), kOperateToken);
  }
};

TEST_F(Executor, RunsItemsInOrderAsNonRootInACgroupThatIsRemovedAfterwards) {
  const std::string job = writeJob("record.sh",
                                   "#!/bin/sh\n"
                                   "id -u > \"$1.uid\"\n"
                                   "cat /proc/self/cgroup > \"$1.cgroup\"\n"
                                   "env > \"$1.env\"\n"
                                   "pwd > \"$1.pwd\"\n"
                                   "date +%s%N > \"$1.t\"\n");
  submitWork("order", {{job, out("a")}, {job, out("b")}});
  auto p = waitForStatus("order", "succeeded");
  ASSERT_EQ(p.at("queue_items").at(0).at("status"), "succeeded");
  EXPECT_EQ(p.at("queue_items").at(0).at("exit_code"), 0);
  EXPECT_EQ(p.at("queue_items").at(1).at("status"), "succeeded");
  EXPECT_LE(std::stoll(waitForFile(outDir() / "a.t")), std::stoll(waitForFile(outDir() / "b.t")));

  EXPECT_EQ(waitForFile(outDir() / "a.uid"), "65534\n");  // nobody, never root
  const std::string env = waitForFile(outDir() / "a.env");
  EXPECT_NE(env.find("ANDROID_SERIAL=127.0.0.1:5555\n"), std::string::npos) << env;
  EXPECT_NE(env.find("PHONEFARM_PROCESS_ID=order\n"), std::string::npos) << env;
  EXPECT_NE(env.find("PHONEFARM_QUEUE_ITEM_ID=order-q0\n"), std::string::npos) << env;
  EXPECT_NE(env.find("PHONEFARM_PHONE_ID=phone_01\n"), std::string::npos) << env;
  EXPECT_NE(env.find("PHONEFARM_ACCOUNT_ID=account_1\n"), std::string::npos) << env;
  // PATH and HOME are the agent's (a submit may not set them, README "Trust boundary").
  EXPECT_NE(("\n" + env).find("\nPATH=/usr/local/bin:/usr/bin:/bin\n"), std::string::npos) << env;
  EXPECT_NE(("\n" + env).find("\nHOME=" + std::string(::getpwnam("nobody")->pw_dir) + "\n"), std::string::npos) << env;
  // It ran in its own work dir, where its copy of the cancel notice goes.
  std::string pwd = waitForFile(outDir() / "a.pwd");
  pwd.pop_back();
  EXPECT_EQ(std::filesystem::path(pwd).parent_path(), dir_.path() / "state/workdirs");
  EXPECT_NE(env.find("PHONEFARM_CANCEL_FILE=" + pwd + "/cancel.json\n"), std::string::npos) << env;

  // It ran in a leaf of our cgroup subtree, and that leaf is gone now.
  ASSERT_FALSE(cgroup_.empty()) << "no writable cgroup v2 on this host";
  const std::string cg = waitForFile(outDir() / "a.cgroup");
  const std::string managed = cgroup_.string() + "/phonefarm-work/";
  const auto rel = managed.substr(managed.find("/phonefarm-test-"));
  EXPECT_NE(cg.find(rel), std::string::npos) << cg;
  std::size_t leaves = 0;
  for (const auto& e : std::filesystem::directory_iterator(cgroup_ / "phonefarm-work")) leaves += e.is_directory();
  EXPECT_EQ(leaves, 0u);
  const auto ready = call("GET", "/readyz", "", kReadToken).json();
  EXPECT_EQ(ready.at("work").at("runtime"), "cgroup");
  EXPECT_EQ(ready.at("work").at("launcher"), "direct");
}

TEST_F(Executor, FailedItemFailsTheProcessAndSkipsTheRest) {
  const std::string job = writeJob("fail.sh", "#!/bin/sh\nexit 3\n");
  submitWork("fails", {{job}, {job}});
  submitWork("next", {{"/usr/bin/true"}});
  auto p = waitForStatus("fails", "failed");
  EXPECT_EQ(p.at("queue_items").at(0).at("status"), "failed");
  EXPECT_EQ(p.at("queue_items").at(0).at("exit_code"), 3);
  EXPECT_EQ(p.at("queue_items").at(1).at("status"), "skipped");
  waitForStatus("next", "succeeded");  // the phone moves on
}

TEST_F(Executor, HardCancelKillsAHundredProcessTreeWithEscapees) {
  submitWork("tree", {{treeJob(), out("tree")}});
  const auto pids = waitForPids("tree", 100);
  ASSERT_EQ(pids.size(), 100u);
  for (pid_t pid : pids) ASSERT_TRUE(alive(pid)) << pid;

  auto r = cancel("tree", "hard");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto t = r.json().at("termination").as_object();
  EXPECT_EQ(t.at("status"), "issued");
  EXPECT_EQ(t.at("terminate_issued"), true);
  EXPECT_EQ(t.at("container").at("runtime"), "cgroup");
  EXPECT_TRUE(t.at("container").at("leader_pid").is_int64());
  EXPECT_NE(std::string(t.at("container").at("cgroup").as_string()).find(cgroup_.string()), std::string::npos);
  EXPECT_TRUE(t.at("phone_reset").is_null());
  EXPECT_EQ(r.json().at("process").at("status"), "cancelling");

  auto p = waitForStatus("tree", "cancelled");
  EXPECT_EQ(p.at("queue_items").at(0).at("status"), "cancelled");
  EXPECT_EQ(p.at("queue_items").at(0).at("signal"), "SIGKILL");
  for (pid_t pid : pids) EXPECT_FALSE(alive(pid)) << "pid " << pid << " survived";
}

TEST_F(Executor, SoftDeliversTheNoticeAndNeverKills) {
  submitWork("soft", {{stubbornJob(), out("soft")}});
  const pid_t pid = waitForPid("soft");
  auto r = cancel("soft", "soft");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json().at("termination").at("status"), "requested");
  EXPECT_EQ(r.json().at("termination").at("terminate_issued"), false);

  EXPECT_EQ(waitForLine(outDir() / "soft.signals"), "TERM\n");
  const auto notice = json::parse(
      waitForFile(outDir() / "soft.notice", [](const std::string& t) { return t.find('}') != std::string::npos; }));
  EXPECT_EQ(notice.at("reason"), "test");
  EXPECT_EQ(notice.at("strategy"), "soft");
  EXPECT_EQ(notice.at("requested_by"), json::parse(R"({"system":"test"})"));

  // Observe for a while: the work keeps running, the process stays cancelling.
  const auto until = std::chrono::steady_clock::now() + milliseconds(1500);
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_TRUE(alive(pid));
    std::this_thread::sleep_for(milliseconds(100));
  }
  auto p = getProcess("soft");
  EXPECT_EQ(p.at("status"), "cancelling");
  EXPECT_EQ(p.at("queue_items").at(0).at("status"), "executing");

  // A later hard cancel escalates.
  EXPECT_EQ(cancel("soft", "hard").json().at("termination").at("status"), "issued");
  waitForStatus("soft", "cancelled");
  EXPECT_FALSE(alive(pid));
}

TEST_F(Executor, SoftThenForceKillsAtForceAtNotBefore) {
  submitWork("stf", {{stubbornJob(), out("stf")}});
  const pid_t pid = waitForPid("stf");
  auto r = cancel("stf", "soft_then_force", 2);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto t = r.json().at("termination").as_object();
  EXPECT_EQ(t.at("status"), "scheduled");
  const std::int64_t force_at = parseTimeMs(t.at("force_at"));
  waitForLine(outDir() / "stf.signals");

  auto p = waitForStatus("stf", "cancelled", seconds(10));
  EXPECT_FALSE(alive(pid));
  const std::int64_t ended = parseTimeMs(p.at("queue_items").at(0).at("ended_at"));
  EXPECT_GE(ended, force_at) << "killed before force_at";
  EXPECT_LT(ended, force_at + 1000) << "killed late";
  EXPECT_EQ(p.at("queue_items").at(0).at("signal"), "SIGKILL");
}

TEST_F(Executor, AgentKilledMidEscalationStillKillsAtTheOriginalDeadline) {
  submitWork("crash", {{stubbornJob(), out("crash")}});
  const pid_t pid = waitForPid("crash");
  auto r = cancel("crash", "soft_then_force", 3);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::int64_t force_at = parseTimeMs(r.json().at("termination").at("force_at"));
  restartAgent(SIGKILL);
  ASSERT_TRUE(alive(pid)) << "work must outlive the agent";

  auto p = waitForStatus("crash", "cancelled", seconds(15));
  EXPECT_FALSE(alive(pid));
  const std::int64_t ended = parseTimeMs(p.at("queue_items").at(0).at("ended_at"));
  EXPECT_GE(ended, force_at);
  EXPECT_LT(ended, force_at + 1000) << "the restarted agent must keep the original deadline";
}

TEST_F(Executor, ItemThatExitsWhileTheAgentIsDownGetsItsTrueExitCode) {
  submitWork("down", {{waitingJob(), out("down"), "42"}});
  waitForPid("down");
  agent_->stop(SIGKILL);
  writeFile(outDir() / "down.go", "");
  // The shim outlives the agent and records the exit.
  const auto executions = dir_.path() / "state" / "executions";
  const auto deadline = std::chrono::steady_clock::now() + seconds(20);
  bool written = false;
  while (!written && std::chrono::steady_clock::now() < deadline) {
    for (const auto& e : std::filesystem::directory_iterator(executions)) {
      written = written || std::filesystem::exists(e.path() / "status.json");
    }
    if (!written) std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_TRUE(written);
  startAgent();
  auto p = waitForStatus("down", "failed");
  EXPECT_EQ(p.at("queue_items").at(0).at("exit_code"), 42);
}

TEST_F(Executor, WorkKeepsRunningAcrossAGracefulRestartAndIsReadopted) {
  submitWork("keep", {{waitingJob(), out("keep"), "0"}});
  const pid_t pid = waitForPid("keep");
  restartAgent(SIGTERM);  // on_shutdown = "keep"
  ASSERT_TRUE(alive(pid));
  EXPECT_EQ(getProcess("keep").at("status"), "running");
  writeFile(outDir() / "keep.go", "");
  auto p = waitForStatus("keep", "succeeded");
  EXPECT_EQ(p.at("queue_items").at(0).at("exit_code"), 0);
}

TEST_F(Executor, SoftCancelAfterARestartReachesTheReadoptedWork) {
  submitWork("adopted", {{stubbornJob(), out("adopted")}});
  const pid_t pid = waitForPid("adopted");
  restartAgent(SIGKILL);
  // The leader is signalled only once verified (pid, start time, cgroup).
  auto r = cancel("adopted", "soft");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json().at("termination").at("status"), "requested");
  EXPECT_EQ(waitForLine(outDir() / "adopted.signals"), "TERM\n");
  EXPECT_TRUE(alive(pid));
  EXPECT_EQ(cancel("adopted", "hard").json().at("termination").at("status"), "issued");
  auto p = waitForStatus("adopted", "cancelled");
  EXPECT_EQ(p.at("queue_items").at(0).at("signal"), "SIGKILL");
  EXPECT_FALSE(alive(pid));
}

TEST_F(Executor, TimeoutKillsTheItemAndFailsIt) {
  submitWork("slow", {{"/usr/bin/sleep", "3600"}}, "phone_01", 1);
  auto p = waitForStatus("slow", "failed", seconds(10));
  const auto& item = p.at("queue_items").at(0);
  EXPECT_EQ(item.at("status"), "failed");
  EXPECT_EQ(item.at("signal"), "SIGKILL") << json::serialize(item);
  EXPECT_TRUE(item.at("exit_code").is_null());
  const std::int64_t ran = parseTimeMs(item.at("ended_at")) - parseTimeMs(item.at("started_at"));
  EXPECT_GE(ran, 1000);
  EXPECT_LT(ran, 3000);
}

TEST_F(Executor, SubmitRejectsCommandsOutsideTheAllowedPrefixes) {
  writeFile(dir_.path() / "outside.sh", "#!/bin/sh\n", 0755);
  const std::string escape = jobsDir().string() + "/../outside.sh";
  auto r = call("POST", "/processes",
                R"({"process_id":"bad","phone_id":"phone_01","account_id":"a","queue_items":[{"command":[")" + escape +
                    R"("]}]})");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(call("GET", "/processes/bad", "", kReadToken).status, 404);
}

// A state_dir relative to the agent's working directory (as --dev's ./var):
// work still runs and reports its exit code.
// A relative state_dir resolves against the agent's working directory, which
// AgentFixture makes the test's dir_ (the shim, running as nobody, must reach
// the execution files through it).
class ExecutorRelativeStateDir : public Executor {
 protected:
  std::string stateDirSetting() const override { return "state"; }
};

TEST_F(ExecutorRelativeStateDir, RunsWorkAndReadsItsStatus) {
  ASSERT_TRUE(std::filesystem::path(stateDirSetting()).is_relative());
  submitWork("rel", {{"/bin/sh", "-c", "echo hello; exit 3"}});
  auto p = waitForStatus("rel", "failed");
  EXPECT_EQ(p.at("queue_items").at(0).at("exit_code"), 3) << boost::json::serialize(p);
}

class ExecutorCancelOnShutdown : public Executor {
 protected:
  std::string onShutdown() const override { return "cancel"; }
};

TEST_F(ExecutorCancelOnShutdown, SigtermCancelsRunningWork) {
  submitWork("stop", {{stubbornJob(), out("stop")}});
  const pid_t pid = waitForPid("stop");
  restartAgent(SIGTERM);
  EXPECT_FALSE(alive(pid));
  auto p = getProcess("stop");
  EXPECT_EQ(p.at("status"), "cancelled");
  EXPECT_EQ(p.at("queue_items").at(0).at("signal"), "SIGKILL");
  EXPECT_EQ(p.at("cancel").at("strategy"), "hard");
}

// cgroup_root pointing at a directory that is not on cgroup2 forces the
// process-group runtime.
class ExecutorFallback : public Executor {
 protected:
  std::string cgroupRootConfig() const override { return (dir_.path() / "not-a-cgroup").string(); }
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() / "not-a-cgroup");
    Executor::SetUp();
  }
};

TEST_F(ExecutorFallback, ProcessGroupRuntimeRunsAndKillsTheTree) {
  EXPECT_EQ(call("GET", "/readyz", "", kReadToken).json().at("work").at("runtime"), "process-group");
  submitWork("fb", {{treeJob(), out("fb")}});
  const auto pids = waitForPids("fb", 100);
  ASSERT_EQ(pids.size(), 100u);
  auto r = cancel("fb", "hard");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json().at("termination").at("status"), "issued");
  EXPECT_EQ(r.json().at("termination").at("container").at("runtime"), "process-group");
  EXPECT_TRUE(r.json().at("termination").at("container").at("cgroup").is_null());
  waitForStatus("fb", "cancelled");
  const auto deadline = std::chrono::steady_clock::now() + seconds(5);
  auto survivors = [&] { return std::count_if(pids.begin(), pids.end(), [](pid_t p) { return alive(p); }); };
  while (survivors() > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(10));
  EXPECT_EQ(survivors(), 0);

  // And ordinary work completes.
  submitWork("fb2", {{"/usr/bin/true"}});
  waitForStatus("fb2", "succeeded");
}

}  // namespace
}  // namespace phonefarm::testing
