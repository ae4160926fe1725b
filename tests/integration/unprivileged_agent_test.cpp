// The real agent as systemd/phonefarm-agent.service runs it: not root but an
// unprivileged user (here an unused uid with its own group, plus the work
// user's group as sysusers' `m phonefarm phonefarm-work` gives it) holding
// exactly the unit's ambient capabilities, with no_new_privs, inside a cgroup
// chowned to it the way Delegate=yes does (the directory, cgroup.procs,
// cgroup.subtree_control, cgroup.threads). It is started with setpriv(1) from
// a shell that first moves itself into that cgroup, from a copy of the binary
// outside the build tree (sharedExecutable: the build tree may be where the
// agent's user cannot enter). The work runs as nobody:
// another uid than the agent's, so every signal, every read of the shim's
// status and every write of cancel.json crosses users without
// CAP_DAC_OVERRIDE. Needs root (CI runs as root) to set that up.
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/integration/work_fixture.hpp"
#include "tests/support/shared_executable.hpp"

namespace phonefarm::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The unit's AmbientCapabilities= (and CapabilityBoundingSet=), in setpriv's spelling.
constexpr const char* kUnitCaps = "+setuid,+setgid,+kill";
// The same as a /proc/<pid>/status mask: bits 6, 7 and 5.
constexpr std::uint64_t kUnitCapMask = (1ULL << 6) | (1ULL << 7) | (1ULL << 5);
constexpr const char* kZeroCaps = "0000000000000000";

uid_t unusedId() {
  for (uid_t id = 62000; id < 63000; ++id) {
    if (::getpwuid(id) == nullptr && ::getgrgid(id) == nullptr) return id;
  }
  return 0;
}

std::string readText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "<key>:\t<value>" of a /proc/<pid>/status text, value only.
std::string statusField(const std::string& status, const std::string& key) {
  const auto pos = status.find("\n" + key + ":\t");
  if (pos == std::string::npos) return "<missing>";
  const auto start = pos + key.size() + 3;
  return status.substr(start, status.find('\n', start) - start);
}

class UnprivilegedAgent : public WorkFixture {
 protected:
  // Replaces the fixture's SetUp: the agent must start as agent_id_, not as root.
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "needs root to set up an unprivileged agent (CI runs as root)";
    agent_id_ = unusedId();
    ASSERT_NE(agent_id_, 0u) << "no unused uid in 62000-62999";
    const passwd* nobody = ::getpwnam("nobody");
    ASSERT_NE(nobody, nullptr);
    work_gid_ = nobody->pw_gid;

    static std::atomic<int> counter{0};
    auto root = exec::detectCgroupRoot("");
    ASSERT_TRUE(root) << "no writable cgroup v2: " << root.error().message;
    cgroup_ = *root / ("phonefarm-test-unpriv-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    ASSERT_TRUE(fs::create_directory(cgroup_));
    // What systemd's Delegate=yes does for User=: the cgroup and the files
    // that let its owner create sub-cgroups and move processes into them.
    std::vector<std::string> delegated = {"", "cgroup.subtree_control", "cgroup.threads"};
    if (delegateProcs()) delegated.emplace_back("cgroup.procs");
    for (const auto& name : delegated) {
      ASSERT_EQ(::chown((cgroup_ / name).c_str(), agent_id_, agent_id_), 0) << cgroup_ / name;
    }

    fs::create_directories(outDir());
    fs::permissions(outDir(), fs::perms(0777), fs::perm_options::replace);
    fs::create_directories(jobsDir());
    // The state dir as tmpfiles and StateDirectoryMode= leave it.
    fs::create_directories(stateDir());
    ASSERT_EQ(::chown(stateDir().c_str(), agent_id_, agent_id_), 0);
    fs::permissions(stateDir(), fs::perms(0711), fs::perm_options::replace);
    writeConfig();
    writeFile(dir_.path() / "tokens",
              std::string("reader read ") + kReadToken + "\noperator operate " + kOperateToken +
                  "\nscheduler schedule " + kScheduleToken + "\n",
              0600);
    for (const auto& file : {configPath(), dir_.path() / "tokens"}) {
      ASSERT_EQ(::chown(file.c_str(), agent_id_, agent_id_), 0);
    }
    startUnprivilegedAgent();
  }

  // Whether the agent's cgroup.procs is chowned too (Delegate=yes does).
  virtual bool delegateProcs() const { return true; }
  // The ambient (and bounding) capabilities the agent starts with.
  virtual std::string capabilities() const { return kUnitCaps; }
  // Detect the agent's own cgroup, as under systemd.
  std::string cgroupRootConfig() const override { return ""; }

  fs::path stateDir() const { return dir_.path() / "state"; }

  void startUnprivilegedAgent() {
    const std::string id = std::to_string(agent_id_);
    const std::string caps = "-all," + capabilities();
    // The shell (still root) enters the delegated cgroup, then setpriv drops
    // to the agent's user with the unit's capabilities and execs the agent.
    const std::vector<std::string> args = {"-c",
                                           "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"",
                                           cgroup_.string(),
                                           "/usr/bin/setpriv",
                                           "--reuid=" + id,
                                           "--regid=" + id,
                                           "--groups=" + std::to_string(work_gid_),
                                           "--inh-caps=" + caps,
                                           "--ambient-caps=" + caps,
                                           "--bounding-set=" + caps,
                                           "--no-new-privs",
                                           "--",
                                           sharedExecutable(PHONEFARM_AGENT_BINARY).string(),
                                           "--config",
                                           configPath().string()};
    agent_ = std::make_unique<AgentProcess>("/bin/sh", args, dir_.path(),
                                            AgentProcess::Env{{"HOME", stateDir().string()}}, dir_.path());
    port_ = agent_->waitForListening(seconds(20));
    ASSERT_NE(port_, 0);
    client_ = std::make_unique<HttpClient>("127.0.0.1", port_);
  }

  void restartUnprivilegedAgent(int signal) {
    client_.reset();
    agent_->stop(signal, seconds(10));
    startUnprivilegedAgent();
  }

  json::object readyWork() {
    auto r = call("GET", "/readyz", "", kReadToken);
    EXPECT_TRUE(r.json().is_object()) << r.body;
    return r.json().is_object() ? r.json().at("work").as_object() : json::object{};
  }

  std::string out(const std::string& name) const { return (outDir() / name).string(); }

  // Records who it runs as, its capabilities and cgroup; exits with $2.
  std::string recordingJob() const {
    return writeJob("record.sh",
                    "#!/bin/sh\n"
                    "grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Amb)):' /proc/self/status > \"$1.status.tmp\"\n"
                    "cat /proc/self/cgroup > \"$1.cgroup\"\n"
                    "mv \"$1.status.tmp\" \"$1.status\"\n"
                    "exit \"$2\"\n");
  }
  // The script, 10 children, 10 setsid escapees and, with `orphans`, 10
  // double-forked setsid orphans; every pid lands in $1.pids.
  std::string treeJob(bool orphans) const {
    return writeJob(orphans ? "tree.sh" : "tree-no-orphans.sh",
                    std::string("#!/bin/sh\n"
                                "out=\"$1.pids\"\n"
                                "echo $$ >> \"$out\"\n"
                                "i=0\n"
                                "while [ $i -lt 10 ]; do\n"
                                "  sleep 3600 & echo $! >> \"$out\"\n"
                                "  setsid sleep 3600 & echo $! >> \"$out\"\n") +
                        (orphans ? "  ( setsid sh -c 'sleep 3600 & echo $! >> \"$0\"' \"$out\" & )\n" : "") +
                        "  i=$((i+1))\n"
                        "done\n"
                        "wait\n");
  }

  HttpClient::Response cancel(const std::string& process_id, const std::string& strategy) {
    return call("POST", "/processes/" + process_id + "/cancel", cancelBody(strategy, 10), kOperateToken);
  }

  // Soft notice (signal + cancel.json, nothing killed), then a hard cancel of
  // a tree with escapees: every process dies, the item ends SIGKILL.
  void softThenHardCancelATree(const std::string& id, const std::string& runtime, bool orphans) {
    submitWork(id, {{stubbornJob(), out(id)}});
    const pid_t pid = waitForPid(id);
    ASSERT_GT(pid, 0);
    auto r = cancel(id, "soft");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json().at("termination").at("status"), "requested") << r.body;
    EXPECT_EQ(waitForLine(outDir() / (id + ".signals")), "TERM\n") << agent_->output();
    const auto notice = json::parse(waitForFile(outDir() / (id + ".notice"),
                                                [](const std::string& t) { return t.find('}') != std::string::npos; }));
    EXPECT_EQ(notice.at("strategy"), "soft");
    EXPECT_TRUE(alive(pid));
    EXPECT_EQ(getProcess(id).at("status"), "cancelling");
    r = cancel(id, "hard");
    EXPECT_EQ(r.json().at("termination").at("status"), "issued") << r.body;
    auto p = waitForStatus(id, "cancelled");
    EXPECT_EQ(p.at("queue_items").at(0).at("signal"), "SIGKILL");
    EXPECT_FALSE(alive(pid));

    const std::string tree = id + "-tree";
    submitWork(tree, {{treeJob(orphans), out(tree)}});
    const std::size_t count = orphans ? 31 : 21;
    auto text = waitForFile(outDir() / (tree + ".pids"),
                            [count](const std::string& t) { return parsePids(t).size() >= count; });
    const auto pids = parsePids(text);
    ASSERT_EQ(pids.size(), count);
    for (pid_t each : pids) ASSERT_TRUE(alive(each)) << each;
    r = cancel(tree, "hard");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json().at("termination").at("container").at("runtime"), runtime.c_str()) << r.body;
    p = waitForStatus(tree, "cancelled");
    EXPECT_EQ(p.at("queue_items").at(0).at("signal"), "SIGKILL");
    // The process-group runtime may settle the item before the last sweep
    // has reaped everything: wait a bounded time for the bodies.
    const auto deadline = std::chrono::steady_clock::now() + seconds(5);
    auto survivors = [&] { return std::count_if(pids.begin(), pids.end(), [](pid_t each) { return alive(each); }); };
    while (survivors() > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(10));
    for (pid_t each : pids) EXPECT_FALSE(alive(each)) << "pid " << each << " survived";
  }

  uid_t agent_id_ = 0;
  gid_t work_gid_ = 0;
};

TEST_F(UnprivilegedAgent, RunsWorkAsAnotherUserWithNoCapabilitiesInItsDelegatedCgroup) {
  // The agent is who the unit makes it: not root, the unit's capabilities.
  const std::string agent_status = readText("/proc/" + std::to_string(agent_->pid()) + "/status");
  const std::string id = std::to_string(agent_id_);
  ASSERT_EQ(statusField(agent_status, "Uid"), id + "\t" + id + "\t" + id + "\t" + id);
  EXPECT_EQ(std::stoull(statusField(agent_status, "CapEff"), nullptr, 16), kUnitCapMask);
  EXPECT_EQ(std::stoull(statusField(agent_status, "CapAmb"), nullptr, 16), kUnitCapMask);

  const auto work = readyWork();
  EXPECT_EQ(work.at("can_run_work"), true) << json::serialize(work);
  EXPECT_EQ(work.at("runtime"), "cgroup") << json::serialize(work);
  EXPECT_EQ(work.at("cgroup"), (cgroup_ / "phonefarm-work").string().c_str());
  // pids_max (4096 by default) goes into the delegated v2 leaf where the
  // subtree has `pids`; on hybrid hosts an agent that may not create v1
  // cgroups says, once, that the limit is not enforced.
  const auto& pids_max = work.at("limits").at("pids_max").as_object();
  EXPECT_EQ(pids_max.at("value"), 4096) << json::serialize(work);
  if (pids_max.contains("unavailable")) {
    const std::string output = agent_->output();
    const std::string event = "exec.limit_unavailable limit=pids_max";
    const auto first = output.find(event);
    EXPECT_NE(first, std::string::npos) << output;
    EXPECT_EQ(output.find(event, first + 1), std::string::npos) << output;
  } else {
    EXPECT_EQ(pids_max.at("cgroup"), "v2") << json::serialize(work);
  }

  submitWork("who", {{recordingJob(), out("who"), "0"}, {recordingJob(), out("who2"), "7"}});
  auto p = waitForStatus("who", "failed");
  // Both exit codes come from status.json, written by nobody, read by the agent.
  EXPECT_EQ(p.at("queue_items").at(0).at("status"), "succeeded") << json::serialize(p);
  EXPECT_EQ(p.at("queue_items").at(0).at("exit_code"), 0);
  EXPECT_EQ(p.at("queue_items").at(1).at("exit_code"), 7) << json::serialize(p);

  const std::string status = waitForFile(outDir() / "who.status");
  const std::string nobody = "65534\t65534\t65534\t65534";
  EXPECT_EQ(statusField("\n" + status, "Uid"), nobody) << status;
  EXPECT_EQ(statusField("\n" + status, "Groups").find(id), std::string::npos) << status;
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapAmb"}) {
    EXPECT_EQ(statusField("\n" + status, set), kZeroCaps) << set << "\n" << status;
  }
  const std::string cg = waitForFile(outDir() / "who.cgroup");
  EXPECT_NE(cg.find(cgroup_.filename().string() + "/phonefarm-work/"), std::string::npos) << cg;

  // The control dirs: the agent's, 0700, and so are the shim's files in
  // them (the shim never becomes nobody); no env file is left behind.
  const fs::path executions = stateDir() / "executions";
  std::size_t dirs = 0;
  for (const auto& e : fs::directory_iterator(executions)) {
    ++dirs;
    struct stat st {};
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, agent_id_) << e.path();
    EXPECT_EQ(st.st_mode & 07777, 0700u) << e.path();
    for (const char* name : {"status.json", "stdout.log", "stderr.log"}) {
      ASSERT_EQ(::stat((e.path() / name).c_str(), &st), 0) << name;
      EXPECT_EQ(st.st_uid, agent_id_) << name;
      EXPECT_EQ(st.st_mode & 07777, 0640u) << name;
    }
    EXPECT_FALSE(fs::exists(e.path() / "env"));
  }
  EXPECT_EQ(dirs, 2u);
  // The work dirs: the agent's, group nobody's, 0770.
  dirs = 0;
  for (const auto& e : fs::directory_iterator(stateDir() / "workdirs")) {
    ++dirs;
    struct stat st {};
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, agent_id_) << e.path();
    EXPECT_EQ(st.st_gid, work_gid_) << e.path();
    EXPECT_EQ(st.st_mode & 07777, 0770u) << e.path();
  }
  EXPECT_EQ(dirs, 2u);
}

TEST_F(UnprivilegedAgent, SoftAndHardCancelReachWorkOfAnotherUser) {
  softThenHardCancelATree("c", "cgroup", /*orphans=*/true);
}

TEST_F(UnprivilegedAgent, RestartedAgentReadoptsAndCancelsTheWork) {
  submitWork("adopted", {{stubbornJob(), out("adopted")}});
  const pid_t pid = waitForPid("adopted");
  ASSERT_GT(pid, 0);
  restartUnprivilegedAgent(SIGKILL);
  ASSERT_TRUE(alive(pid)) << "work must outlive the agent";
  // Signalled only once verified as the same leader (pid, start time, cgroup).
  auto r = cancel("adopted", "soft");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json().at("termination").at("status"), "requested") << r.body;
  EXPECT_EQ(waitForLine(outDir() / "adopted.signals"), "TERM\n") << agent_->output();
  EXPECT_EQ(cancel("adopted", "hard").json().at("termination").at("status"), "issued");
  auto p = waitForStatus("adopted", "cancelled");
  EXPECT_EQ(p.at("queue_items").at(0).at("signal"), "SIGKILL");
  EXPECT_FALSE(alive(pid));
}

// A cgroup whose cgroup.procs the agent cannot write (a chowned directory
// alone): detection says why, and the process-group runtime takes over,
// killing the group and the setsid escapees among the agent's descendants
// with CAP_KILL. Not the double-forked setsid orphans: finding those reads
// /proc/<pid>/environ (0400, nobody's), which the unit's capabilities do not
// allow (see systemd/phonefarm-agent.service).
class UnprivilegedAgentWithoutDelegatedProcs : public UnprivilegedAgent {
 protected:
  bool delegateProcs() const override { return false; }
};

TEST_F(UnprivilegedAgentWithoutDelegatedProcs, FallsBackToProcessGroupsAndStillKillsEveryEscapee) {
  const auto work = readyWork();
  EXPECT_EQ(work.at("runtime"), "process-group") << json::serialize(work);
  EXPECT_NE(std::string(work.at("cgroup_unavailable").as_string()).find("cgroup.procs"), std::string::npos)
      << json::serialize(work);
  softThenHardCancelATree("pg", "process-group", /*orphans=*/false);
}

// Retention as the unit runs it: the agent (not root, no CAP_DAC_OVERRIDE)
// must delete an execution directory in which the job made subdirectories of
// its own, one of them locked (chmod 000): only the work user may unlink
// inside those, so that part is done as run_as (`phonefarm-agent
// remove-tree`), and nothing outside the tree is followed.
class UnprivilegedAgentRetention : public UnprivilegedAgent {
 protected:
  std::string extraConfig() const override {
    return "[retention]\nprocesses_days = 0.00003\nexecutions_days = 0.00001\nsweep_interval_seconds = 1\n";
  }
};

TEST_F(UnprivilegedAgentRetention, DeletesWhatOnlyTheWorkUserCouldDelete) {
  const fs::path outside = outDir() / "outside";
  fs::create_directories(outside);
  writeFile(outside / "precious", "keep me", 0644);
  const std::string job = writeJob("locker.sh",
                                   "#!/bin/sh\n"
                                   "mkdir -p open/sub locked/inner && echo x > open/sub/f && echo y > locked/inner/g\n"
                                   "chmod 000 locked/inner locked\n"
                                   "ln -s \"$1\" escape\n");
  submitWork("locker", {{job, outside.string()}});
  waitForStatus("locker", "succeeded");
  auto logs = call("GET", "/processes/locker/items/locker-q0/logs", "", kReadToken);
  ASSERT_EQ(logs.status, 200) << logs.body;
  const fs::path exec_dir = stateDir() / "workdirs" / logs.header("x-phonefarm-execution-id");
  ASSERT_TRUE(fs::exists(exec_dir / "open" / "sub" / "f"));
  const fs::path control_dir = stateDir() / "executions" / logs.header("x-phonefarm-execution-id");

  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  while (fs::exists(fs::symlink_status(exec_dir)) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_FALSE(fs::exists(fs::symlink_status(exec_dir))) << agent_->output();
  EXPECT_FALSE(fs::exists(fs::symlink_status(control_dir)));
  EXPECT_TRUE(fs::exists(outside / "precious"));
  EXPECT_FALSE(agent_->findLine("retention.dir_failed").has_value()) << agent_->output();
  const auto deadline2 = std::chrono::steady_clock::now() + seconds(30);
  while (call("GET", "/processes/locker", "", kReadToken).status != 404 &&
         std::chrono::steady_clock::now() < deadline2) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(call("GET", "/processes/locker", "", kReadToken).status, 404);
}

// Without the unit's capabilities the agent runs nothing and says why.
class UnprivilegedAgentWithoutCapabilities : public UnprivilegedAgent {
 protected:
  std::string capabilities() const override { return "+kill"; }
};

TEST_F(UnprivilegedAgentWithoutCapabilities, KeepsWorkQueuedAndNamesWhatIsMissing) {
  const auto work = readyWork();
  EXPECT_EQ(work.at("can_run_work"), false) << json::serialize(work);
  const std::string why(work.at("unavailable").as_string());
  EXPECT_NE(why.find("without CAP_SETUID, CAP_SETGID,"), std::string::npos) << why;
  submitWork("queued", {{"/usr/bin/true"}});
  EXPECT_EQ(getProcess("queued").at("status"), "queued");
}

// The adb server the agent starts (when none answers) must not inherit the
// ambient capabilities the agent holds for the exec shim.
class UnprivilegedAgentStartingAdb : public UnprivilegedAgent {
 protected:
  UnprivilegedAgentStartingAdb() {
    writeFile(fakeAdb(),
              "#!/bin/sh\ncat /proc/self/status > \"" + out("adb.status.tmp") + "\" && mv \"" + out("adb.status.tmp") +
                  "\" \"" + out("adb.status") + "\"\nexit 1\n",
              0755);
  }
  fs::path fakeAdb() const { return dir_.path() / "fake-adb"; }
  std::string adbConfig() const override {
    return "[adb]\nserver = \"127.0.0.1:1\"\nadb_path = \"" + fakeAdb().string() + "\"\n";
  }
};

TEST_F(UnprivilegedAgentStartingAdb, StartsTheAdbServerWithoutCapabilities) {
  const std::string status = waitForFile(outDir() / "adb.status");
  EXPECT_EQ(statusField("\n" + status, "Uid").substr(0, std::to_string(agent_id_).size()), std::to_string(agent_id_))
      << status;
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapAmb"}) {
    EXPECT_EQ(statusField("\n" + status, set), kZeroCaps) << set << "\n" << status;
  }
}

}  // namespace
}  // namespace phonefarm::testing
