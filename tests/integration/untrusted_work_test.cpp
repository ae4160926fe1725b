// Jobs are third-party scripts: what one controls (its env, its files, its
// commands' paths) must not wedge the agent or turn an allowed command into
// another one. Each test reproduces an attack against the real daemon.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/cancel/fault_injection.hpp"
#include "agent/exec/env_policy.hpp"
#include "tests/integration/work_fixture.hpp"
#include "tests/support/run_command.hpp"
#include "tests/support/state_dir_lock.hpp"

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string submitBody(const std::string& id, const std::string& command, const boost::json::object& env) {
  boost::json::object item{{"command", boost::json::array{command}}, {"env", env}};
  return boost::json::serialize(boost::json::object{
      {"process_id", id}, {"phone_id", "phone_01"}, {"account_id", "a"}, {"queue_items", boost::json::array{item}}});
}

// /healthz answered within 1 s: the event loop is not wedged.
void expectResponsive(std::uint16_t port) {
  HttpClient client("127.0.0.1", port);
  client.setTimeout(1000ms);
  const auto start = std::chrono::steady_clock::now();
  auto r = client.get("/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms);
}

// Names that make the loader, a shell or an interpreter run extra code.
const std::vector<std::string> kHookNames = {"LD_PRELOAD",
                                             "LD_LIBRARY_PATH",
                                             "LD_AUDIT",
                                             "GCONV_PATH",
                                             "GLIBC_TUNABLES",
                                             "LOCPATH",
                                             "HOSTALIASES",
                                             "MALLOC_CHECK_",
                                             "BASH_ENV",
                                             "ENV",
                                             "SHELLOPTS",
                                             "BASHOPTS",
                                             "PS4",
                                             "PROMPT_COMMAND",
                                             "IFS",
                                             "CDPATH",
                                             "PYTHONSTARTUP",
                                             "PYTHONPATH",
                                             "PYTHONHOME",
                                             "PYTHONINSPECT",
                                             "PERL5OPT",
                                             "PERL5LIB",
                                             "PERLLIB",
                                             "RUBYOPT",
                                             "RUBYLIB",
                                             "NODE_OPTIONS",
                                             "NODE_PATH",
                                             "JAVA_TOOL_OPTIONS",
                                             "_JAVA_OPTIONS",
                                             "JDK_JAVA_OPTIONS"};

class EnvPolicyTest : public AgentFixture {};

TEST_F(EnvPolicyTest, EveryLoaderAndInterpreterHookIs422AndStoresNothing) {
  const std::string job = (jobsDir() / "post.sh").string();
  for (const auto& name : kHookNames) {
    auto r = call("POST", "/processes", submitBody("env-" + name, job, {{name, "/tmp/x"}}));
    EXPECT_EQ(r.status, 422) << name << ": " << r.body;
    EXPECT_NE(r.body.find("\"" + name + "\""), std::string::npos) << "the 422 names the field: " << r.body;
    EXPECT_EQ(call("GET", "/processes/env-" + name, "", kReadToken).status, 404) << name;
  }
  // Every pattern of the documented list is refused, ordinary names are not.
  for (std::string_view pattern : exec::deniedEnvPatterns()) {
    std::string name(pattern);
    if (name.ends_with('*')) name = name.substr(0, name.size() - 1) + "X";
    EXPECT_EQ(call("POST", "/processes", submitBody("pat-1", job, {{name, "1"}})).status, 422) << name;
  }
  // PATH and HOME: a job's own PATH would let an allowed script run a
  // binary from anywhere, its own HOME point git or npm at planted dotfiles.
  for (const std::string name : {"PATH", "HOME"}) {
    auto r = call("POST", "/processes", submitBody("env-" + name, job, {{name, "/tmp"}}));
    EXPECT_EQ(r.status, 422) << name << ": " << r.body;
    EXPECT_NE(r.body.find("\"" + name + "\""), std::string::npos) << r.body;
  }
  EXPECT_EQ(call("POST", "/processes", submitBody("env-ok", job, {{"APP_TOKEN", "1"}, {"LANG", "C"}})).status, 201);
  expectResponsive(port_);
}

class AllowedEnvTest : public AgentFixture {
 protected:
  std::string workConfig() const override {
    return AgentFixture::workConfig() + "allowed_env = [\"APP_TOKEN\", \"LD_LIBRARY_PATH\", \"PATH\"]\n";
  }
};

TEST_F(AllowedEnvTest, AnAllowlistReplacesTheDenylist) {
  const std::string job = (jobsDir() / "post.sh").string();
  EXPECT_EQ(call("POST", "/processes", submitBody("a-1", job, {{"APP_TOKEN", "1"}})).status, 201);
  EXPECT_EQ(call("POST", "/processes", submitBody("a-2", job, {{"LD_LIBRARY_PATH", "/opt/lib"}})).status, 201);
  EXPECT_EQ(call("POST", "/processes", submitBody("a-4", job, {{"PATH", "/opt/bin:/usr/bin"}})).status, 201);
  auto r = call("POST", "/processes", submitBody("a-3", job, {{"LANG", "C"}}));
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("work.allowed_env"), std::string::npos) << r.body;
}

class UntrustedWorkTest : public WorkFixture {
 protected:
  void expectResponsive() { testing::expectResponsive(port_); }

  static bool terminal(const boost::json::object& p) {
    const auto& s = p.at("status");
    return s == "succeeded" || s == "failed" || s == "cancelled";
  }
};

// The control dir named on the job's own shim's command line.
constexpr const char* kControlDirOfShim = "$(tr '\\0' '\\n' < /proc/$PPID/cmdline | sed -n 4p)";

TEST_F(UntrustedWorkTest, AFifoInPlaceOfTheStatusFileDoesNotFreezeTheAgent) {
  // The attack of a job whose cwd was its execution dir: a FIFO where the
  // agent reads the outcome, a directory where the shim writes it. Tried in
  // its work dir (its cwd) and in the control dir.
  const std::string plant = "rm -f status.json; mkfifo status.json; mkdir status.json.tmp; ";
  const std::string job = writeJob(
      "fifo.sh", "#!/bin/sh\n" + plant + "cd \"" + kControlDirOfShim + "\" 2>/dev/null && " + plant + "exit 0\n");
  submitWork("fifo-1", {{job}});
  auto p = waitForProcess("fifo-1", terminal);
  expectResponsive();
  // The outcome is the command's: succeeded, no note.
  EXPECT_EQ(p.at("status"), "succeeded") << boost::json::serialize(p);
  const auto& item = p.at("queue_items").at(0).as_object();
  EXPECT_EQ(item.at("exit_code"), 0) << boost::json::serialize(p);
  EXPECT_TRUE(item.at("note").is_null()) << boost::json::serialize(p);
  // Recovery reads the control dir: a restart must not freeze either.
  restartAgent(SIGKILL);
  expectResponsive();
  EXPECT_EQ(getProcess("fifo-1").at("status"), p.at("status"));
}

TEST_F(UntrustedWorkTest, TheOutcomeIsWhatTheSupervisorSawWhateverTheJobTried) {
  // The job kills its parent (the shim), plants a forged status where it
  // can, then exits 3: the outcome must still be exit 3.
  const std::string forged = R"({"pid":1,"exit_code":0,"signal":null,"started_at":1,"ended_at":2})";
  const std::string job =
      writeJob("forge.sh", "#!/bin/sh\nc=\"" + std::string(kControlDirOfShim) +
                               "\"\nkill -9 $PPID 2>/dev/null && echo killed > \"$1\"\n" + "echo '" + forged +
                               "' > status.json\n(echo '" + forged +
                               "' > \"$c/status.json\") 2>/dev/null && echo forged >> \"$1\"\n"
                               "ls \"$c\" >/dev/null 2>&1 && echo listed >> \"$1\"\necho done >> \"$1\"\nexit 3\n");
  const fs::path out = outDir() / "forge";
  submitWork("forge-1", {{job, out.string()}});
  auto p = waitForProcess("forge-1", terminal);
  expectResponsive();
  EXPECT_EQ(p.at("status"), "failed") << boost::json::serialize(p);
  const auto& item = p.at("queue_items").at(0).as_object();
  EXPECT_EQ(item.at("exit_code"), 3) << boost::json::serialize(p);
  EXPECT_TRUE(item.at("signal").is_null()) << boost::json::serialize(p);
  EXPECT_TRUE(item.at("note").is_null()) << boost::json::serialize(p);
  // None of the attempts on the supervisor or its directory worked.
  EXPECT_EQ(waitForFile(out), "done\n");
}

// A job's env values are secrets: not on any command line while it runs, not
// in the agent's log, not in any answer, and gone from the store once the
// item ends.
TEST_F(UntrustedWorkTest, AnEnvValueNeverAppearsInACommandLineALogOrAResponse) {
  const std::string secret = "pf-secret-" + std::to_string(::getpid()) + "-Zq8x";
  const fs::path out = outDir() / "secret";
  const std::string job =
      writeJob("secret.sh", "#!/bin/sh\n[ \"$APP_TOKEN\" = \"" + secret +
                                "\" ] && echo ok > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"\nexec sleep 600\n");
  boost::json::object item{{"queue_item_id", "sec-1-q0"},
                           {"command", boost::json::array{job, out.string()}},
                           {"env", boost::json::object{{"APP_TOKEN", secret}}}};
  boost::json::object body{{"process_id", "sec-1"},
                           {"phone_id", "phone_01"},
                           {"account_id", "account_1"},
                           {"queue_items", boost::json::array{item}}};
  std::vector<std::string> answers;
  auto keep = [&](const HttpClient::Response& r) {
    answers.push_back(r.body);
    return r;
  };
  ASSERT_EQ(keep(call("POST", "/processes", boost::json::serialize(body))).status, 201);
  // The job got the value (it checks it itself) and is running.
  EXPECT_EQ(waitForFile(out), "ok\n");
  std::size_t cmdlines = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in && cmdline.empty()) continue;
    ++cmdlines;
    EXPECT_EQ(cmdline.find(secret), std::string::npos) << "in /proc/" << name << "/cmdline";
  }
  EXPECT_GT(cmdlines, 3u);
  keep(call("GET", "/processes/sec-1", "", kReadToken));
  keep(call("GET", "/processes?limit=100", "", kReadToken));
  keep(call("GET", "/debug", "", kOperateToken));
  keep(call("GET", "/metrics", "", kReadToken));
  keep(call("POST", "/processes/sec-1/cancel", cancelBody("hard"), kOperateToken));
  waitForStatus("sec-1", "cancelled");
  expectResponsive();
  keep(call("GET", "/processes/sec-1", "", kReadToken));
  keep(call("GET", "/processes/sec-1/items/sec-1-q0/logs", "", kReadToken));
  keep(call("GET", "/processes/sec-1/items/sec-1-q0/logs?stream=stderr", "", kReadToken));
  for (const auto& answer : answers) EXPECT_EQ(answer.find(secret), std::string::npos) << answer;
  EXPECT_EQ(agent_->output().find(secret), std::string::npos);
  // Nothing of it is left in the state dir: not in an env file of the
  // control dir, not in the database once the agent has closed it.
  client_.reset();
  EXPECT_EQ(agent_->stop(SIGTERM), 0);
  std::size_t files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir_.path() / "state")) {
    if (!entry.is_regular_file()) continue;
    ++files;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(secret), std::string::npos) << entry.path();
  }
  EXPECT_GE(files, 3u);  // agent.db, the logs, status
  startAgent();
}

TEST_F(UntrustedWorkTest, ACommandSwappedAfterSubmitIsRefusedAtLaunch) {
  const std::string gate = writeJob("gate.sh", "#!/bin/sh\nwhile [ ! -e \"$1\" ]; do sleep 0.05; done\n");
  const std::string ok = writeJob("ok.sh", "#!/bin/sh\ntouch \"$1\"\n");
  const fs::path link = jobsDir() / "link.sh";
  fs::create_symlink(ok, link);
  fs::create_directories(dir_.path() / "outside");
  writeFile(dir_.path() / "outside" / "evil.sh", "#!/bin/sh\ntouch \"$1\"\n", 0755);
  const fs::path go = outDir() / "go";
  const fs::path ran = outDir() / "ran";
  submitWork("swap-1", {{gate, go.string()}, {link.string(), ran.string()}});
  waitForItem("swap-1", 0, "executing");
  // Between submit and launch the link now leads out of the allowed prefixes.
  fs::remove(link);
  fs::create_symlink(dir_.path() / "outside" / "evil.sh", link);
  writeFile(go, "", 0644);
  auto p = waitForProcess("swap-1", terminal);
  EXPECT_EQ(p.at("status"), "failed") << boost::json::serialize(p);
  const auto& item = p.at("queue_items").at(1).as_object();
  ASSERT_TRUE(item.at("note").is_string()) << boost::json::serialize(p);
  // The note README "Trust boundary" quotes.
  EXPECT_EQ(std::string(item.at("note").as_string())
                .rfind("failed to start: refused at launch: command " + link.string() + " resolves to " +
                           (dir_.path() / "outside" / "evil.sh").string() + ", which is not under an allowed prefix (",
                       0),
            0u)
      << boost::json::serialize(p);
  EXPECT_FALSE(fs::exists(ran)) << "the swapped-in command ran";
  expectResponsive();
}

// Below the prefix too: a command the work user could rewrite (so one job
// could change what another runs) is refused at launch, naming it.
TEST_F(UntrustedWorkTest, ACommandTheWorkUserCanWriteIsRefusedAtLaunch) {
  const std::string gate = writeJob("gate.sh", "#!/bin/sh\nwhile [ ! -e \"$1\" ]; do sleep 0.05; done\n");
  const std::string shared = writeJob("shared.sh", "#!/bin/sh\ntouch \"$1\"\n");
  const fs::path go = outDir() / "go";
  const fs::path ran = outDir() / "ran";
  submitWork("writable-1", {{gate, go.string()}, {shared, ran.string()}});
  waitForItem("writable-1", 0, "executing");
  fs::permissions(shared, fs::perms(0757), fs::perm_options::replace);  // o+w: the work user may rewrite it
  writeFile(go, "", 0644);
  auto p = waitForProcess("writable-1", terminal);
  EXPECT_EQ(p.at("status"), "failed") << boost::json::serialize(p);
  const auto& item = p.at("queue_items").at(1).as_object();
  ASSERT_TRUE(item.at("note").is_string()) << boost::json::serialize(p);
  EXPECT_EQ(std::string(item.at("note").as_string())
                .rfind("failed to start: refused at launch: command " + shared + " is writable by", 0),
            0u)
      << boost::json::serialize(p);
  EXPECT_FALSE(fs::exists(ran)) << "a command the work user could rewrite ran";
  expectResponsive();
}

TEST_F(UntrustedWorkTest, ACommandThroughProcSelfCwdIsJudgedAndRunByItsRealPath) {
  // /proc/self/cwd is the agent's cwd when it checks (the test's dir, see
  // agent_fixture.hpp) and the command's own work dir when it execs: out of
  // the prefixes once resolved, the submit is refused (422)...
  fs::create_directories(dir_.path() / "outside");
  writeFile(dir_.path() / "outside" / "evil.sh", "#!/bin/sh\ntouch \"$1\"\n", 0755);
  auto r = call("POST", "/processes", submitBody("cwd-0", "/proc/self/cwd/outside/evil.sh", {}));
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("not under an allowed prefix"), std::string::npos) << r.body;
  EXPECT_EQ(call("GET", "/processes/cwd-0", "", kReadToken).status, 404);
  expectResponsive();
  // ... and in them it runs by its real path, never resolved again from the
  // job's work dir (where a job could plant a jobs/real.sh of its own).
  const std::string real = writeJob("real.sh", "#!/bin/sh\necho \"$0\" > \"$1\"\n");
  const fs::path out = outDir() / "argv0";
  submitWork("cwd-1", {{"/proc/self/cwd/jobs/real.sh", out.string()}});
  auto p = waitForProcess("cwd-1", terminal);
  EXPECT_EQ(p.at("status"), "succeeded") << boost::json::serialize(p);
  EXPECT_EQ(waitForFile(out), real + "\n");
  expectResponsive();
}

// The env policy in force when an item starts, not the one of its submit:
// work.allowed_env changed while the item waited behind another.
class EnvPolicyAtLaunchTest : public UntrustedWorkTest {
 protected:
  std::string moreWorkKeys() const override { return "allowed_env = [" + allowed_env_ + "]\n"; }
  std::string allowed_env_ = "\"APP_EXTRA\"";
};

TEST_F(EnvPolicyAtLaunchTest, AnItemWhoseEnvNameIsNoLongerAllowedFailsAtLaunchWithoutRunning) {
  const std::string gate = writeJob("gate.sh", "#!/bin/sh\nwhile [ ! -e \"$1\" ]; do sleep 0.05; done\n");
  const std::string job = writeJob("ran.sh", "#!/bin/sh\ntouch \"$1\"\n");
  const fs::path go = outDir() / "go";
  const fs::path ran = outDir() / "ran";
  const std::string value = "pf-extra-" + std::to_string(::getpid()) + "-Kw3";
  boost::json::array items{
      boost::json::object{{"queue_item_id", "pol-1-q0"}, {"command", boost::json::array{gate, go.string()}}},
      boost::json::object{{"queue_item_id", "pol-1-q1"},
                          {"command", boost::json::array{job, ran.string()}},
                          {"env", boost::json::object{{"APP_EXTRA", value}}}}};
  auto r = call("POST", "/processes",
                boost::json::serialize(boost::json::object{
                    {"process_id", "pol-1"}, {"phone_id", "phone_01"}, {"account_id", "a"}, {"queue_items", items}}));
  ASSERT_EQ(r.status, 201) << r.body;
  waitForItem("pol-1", 0, "executing");
  // The operator narrows the policy; the agent restarts with it (the first
  // item keeps running: on_shutdown = "keep").
  allowed_env_ = "\"APP_TOKEN\"";
  writeConfig();
  restartAgent(SIGTERM);
  writeFile(go, "", 0644);
  auto p = waitForProcess("pol-1", terminal);
  expectResponsive();
  EXPECT_EQ(p.at("status"), "failed") << boost::json::serialize(p);
  EXPECT_EQ(p.at("queue_items").at(0).at("status"), "succeeded") << boost::json::serialize(p);
  const auto& item = p.at("queue_items").at(1).as_object();
  ASSERT_TRUE(item.at("note").is_string()) << boost::json::serialize(p);
  const std::string note(item.at("note").as_string());
  EXPECT_NE(note.find("refused at launch: env APP_EXTRA: not in work.allowed_env"), std::string::npos) << note;
  EXPECT_EQ(note.find(value), std::string::npos) << note;
  EXPECT_EQ(agent_->output().find(value), std::string::npos);
  EXPECT_FALSE(fs::exists(ran)) << "the item ran";
}

TEST_F(UntrustedWorkTest, ACommandIsExecutedByItsResolvedPath) {
  // "$0" is the real path, so scripts that use `dirname "$0"` keep working.
  const std::string real = writeJob("real.sh", "#!/bin/sh\necho \"$0\" > \"$1\"\n");
  const fs::path link = jobsDir() / "alias.sh";
  fs::create_symlink(real, link);
  const fs::path out = outDir() / "argv0";
  submitWork("argv0-1", {{link.string(), out.string()}});
  waitForStatus("argv0-1", "succeeded");
  EXPECT_EQ(waitForFile(out), real + "\n");
}

// The store holds env values of pending and running items: agent.db and its
// -wal and -shm are the agent's only (0600), whatever the umask, so that the
// technicians' group (the state dir's) cannot read them.
class StoreModeTest : public AgentFixture {
 protected:
  void SetUp() override {
    // The most permissive umask: the modes must not come from it.
    const mode_t old = ::umask(0);
    AgentFixture::SetUp();
    ::umask(old);
  }

  std::string modes() const {
    std::string out;
    for (const char* name : {"agent.db", "agent.db-wal", "agent.db-shm"}) {
      struct stat st {};
      const fs::path path = dir_.path() / "state" / name;
      out += std::string(name) + " ";
      if (::stat(path.c_str(), &st) != 0) {
        out += "missing; ";
        continue;
      }
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
      out += std::string(mode) + "; ";
    }
    return out;
  }
};

TEST_F(StoreModeTest, TheDatabaseAndItsWalAndShmAreTheOwnersOnly) {
  const std::string expected = "agent.db 0600; agent.db-wal 0600; agent.db-shm 0600; ";
  // Something pending, with an env value, is in the store.
  ASSERT_EQ(
      call("POST", "/processes", submitBody("mode-1", (jobsDir() / "post.sh").string(), {{"APP_TOKEN", "s"}})).status,
      201);
  EXPECT_EQ(modes(), expected);
  // Files a crash (or an older agent) left more open are tightened at start.
  client_.reset();
  EXPECT_EQ(agent_->stop(SIGKILL), 128 + SIGKILL);
  for (const char* name : {"agent.db", "agent.db-wal", "agent.db-shm"}) {
    const fs::path path = dir_.path() / "state" / name;
    if (fs::exists(path)) fs::permissions(path, fs::perms(0666), fs::perm_options::replace);
  }
  const mode_t old = ::umask(0);
  startAgent();
  ::umask(old);
  EXPECT_EQ(call("GET", "/processes/mode-1", "", kReadToken).status, 200);
  EXPECT_EQ(modes(), expected);
}

// The test hook PHONEFARM_FAULT=crash_after_cancel_commit (README "Test
// hooks") kills the agent exactly between a hard cancel's commit and its
// kill: the restarted agent must carry the committed kill out.
class CommittedKillCrashTest : public UntrustedWorkTest {
 protected:
  AgentProcess::Env agentEnv() const override {
    if (!fault_) return {};
    return {{"PHONEFARM_FAULT", "crash_after_cancel_commit"}};
  }

  // The killed agent's lock on state_dir/agent.lock may outlive it for a few
  // milliseconds (tests/support/state_dir_lock.hpp): wait for it.
  void waitForStateDirLock() {
    const fs::path lock = dir_.path() / "state" / "agent.lock";
    ASSERT_TRUE(phonefarm::testing::waitForStateDirLock(lock, 5s))
        << "state_dir still locked 5 s after the crash; held by" << phonefarm::testing::stateDirLockHolders(lock);
  }

  // The value of PHONEFARM_PROCESS_ID in a live process's environment: a
  // recorded pid counts as the job's only while it carries the job's id.
  static std::string processIdOf(pid_t pid) {
    if (!alive(pid)) return "";
    std::ifstream in("/proc/" + std::to_string(pid) + "/environ");
    std::string var;
    const std::string key = "PHONEFARM_PROCESS_ID=";
    while (std::getline(in, var, '\0')) {
      if (var.starts_with(key)) return var.substr(key.size());
    }
    return "";
  }

  bool fault_ = true;
};

TEST_F(CommittedKillCrashTest, ACrashRightAfterACommittedHardCancelStillKillsTheTreeAfterTheRestart) {
  ASSERT_FALSE(cgroup_.empty()) << "no writable cgroup v2 on this host";
  EXPECT_TRUE(agent_->waitForLine("agent.fault_injection fault=crash_after_cancel_commit", 5s)) << agent_->output();
  // A tree: the job, a child, a setsid escapee and a double-forked orphan,
  // all ignoring the stop notice; their pids recorded once all are started.
  const std::string job = writeJob("tree.sh",
                                   "#!/bin/sh\n"
                                   "trap '' TERM\n"
                                   "sleep 600 & child=$!\n"
                                   "setsid sleep 600 & escaped=$!\n"
                                   "orphan=$(setsid sleep 600 >/dev/null 2>&1 & echo $!)\n"
                                   "{ echo $$ $child $escaped $orphan; cat /proc/self/cgroup; } > \"$1.tmp\"\n"
                                   "mv \"$1.tmp\" \"$1\"\n"
                                   "while :; do sleep 1 & wait $!; done\n");
  const fs::path out = outDir() / "tree.pids";
  submitWork("crash-kill-1", {{job, out.string()}});
  const std::string record = waitForLine(out);
  const auto pids = parsePids(record.substr(0, record.find('\n')));
  ASSERT_EQ(pids.size(), 4u) << record;
  // Its cgroup leaf, below the test's subtree.
  fs::path leaf;
  const std::string mark = "/" + cgroup_.filename().string() + "/";
  if (const auto at = record.find(mark); at != std::string::npos) {
    leaf = cgroup_ / record.substr(at + mark.size(), record.find('\n', at) - at - mark.size());
  }
  ASSERT_TRUE(fs::is_directory(leaf)) << record;
  for (pid_t pid : pids) ASSERT_EQ(processIdOf(pid), "crash-kill-1") << pid;

  // The hook fires on a kill only: a notice with a later deadline, on other
  // work, is answered and the agent lives on.
  submitWork("crash-notice-1", {{stubbornJob(), (outDir() / "notice").string()}}, "phone_02");
  waitForPid("notice");
  auto notice = call("POST", "/processes/crash-notice-1/cancel", cancelBody("soft_then_force", 600), kOperateToken);
  EXPECT_EQ(notice.status, 200) << notice.body;
  EXPECT_TRUE(agent_->running());

  // The hard cancel: committed, then the agent dies before the kill, so
  // before it answers.
  std::optional<int> answered;
  try {
    answered =
        call("POST", "/processes/crash-kill-1/cancel",
             R"({"reason":"committed then crashed","strategy":"hard","requested_by":{"system":"test"}})", kOperateToken)
            .status;
  } catch (const std::exception&) {
    // the connection closed without an answer
  }
  EXPECT_FALSE(answered.has_value()) << "answered " << *answered << " before the crash";
  EXPECT_EQ(agent_->waitExit(10s), cancel::kFaultExitCode) << agent_->output();
  EXPECT_TRUE(agent_->findLine("agent.fault_injected fault=crash_after_cancel_commit process_id=crash-kill-1"))
      << agent_->output();
  // The kill was not done: the whole tree is still alive.
  for (pid_t pid : pids) EXPECT_EQ(processIdOf(pid), "crash-kill-1") << "pid " << pid << " died with the agent";
  if (HasFailure()) return;

  // Restarted without the fault, on the same state dir: the committed kill
  // is carried out.
  client_.reset();
  waitForStateDirLock();
  fault_ = false;
  startAgent();
  EXPECT_FALSE(agent_->findLine("agent.fault_injection")) << agent_->output();
  auto p = waitForStatus("crash-kill-1", "cancelled", 10s);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::vector<pid_t> left;
  do {
    left.clear();
    for (pid_t pid : pids) {
      if (processIdOf(pid) == "crash-kill-1") left.push_back(pid);
    }
    if (left.empty()) break;
    std::this_thread::sleep_for(10ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_TRUE(left.empty()) << left.size() << " processes of the tree alive 10 s after the restart, e.g. "
                            << left.front();
  // Nothing left in its cgroup leaf either (removed once empty).
  auto populated = exec::isPopulated(leaf);
  EXPECT_TRUE(populated.ok() ? !*populated : !fs::exists(leaf)) << leaf << " still holds processes";

  const auto& item = p.at("queue_items").at(0).as_object();
  EXPECT_EQ(item.at("status"), "cancelled") << boost::json::serialize(p);
  EXPECT_EQ(item.at("signal"), "SIGKILL") << boost::json::serialize(p);
  ASSERT_TRUE(p.at("cancel").is_object()) << boost::json::serialize(p);
  EXPECT_EQ(p.at("cancel").at("strategy"), "hard") << boost::json::serialize(p);
  EXPECT_EQ(p.at("cancel").at("reason"), "committed then crashed") << boost::json::serialize(p);
  const auto& audit = p.at("cancel_audit").as_array();
  ASSERT_EQ(audit.size(), 1u) << boost::json::serialize(p);
  EXPECT_EQ(audit.at(0).at("reason"), "committed then crashed") << boost::json::serialize(p);
  expectResponsive();
}

// A value that names no fault point is said and ignored: the agent runs as
// without the variable.
class UnknownFaultTest : public UntrustedWorkTest {
 protected:
  AgentProcess::Env agentEnv() const override { return {{"PHONEFARM_FAULT", "crash_after_everything"}}; }
};

TEST_F(UnknownFaultTest, IsLoggedAndIgnored) {
  EXPECT_TRUE(agent_->waitForLine("agent.fault_unknown value=\"crash_after_everything\"", 5s)) << agent_->output();
  EXPECT_FALSE(agent_->findLine("agent.fault_injection")) << agent_->output();
  submitWork("unknown-fault-1", {{stubbornJob(), (outDir() / "unknown").string()}});
  waitForPid("unknown");
  auto r = call("POST", "/processes/unknown-fault-1/cancel", cancelBody("hard"), kOperateToken);
  EXPECT_EQ(r.status, 200) << r.body;
  waitForStatus("unknown-fault-1", "cancelled");
  EXPECT_TRUE(agent_->running());
}

TEST(WritablePrefix, CheckConfigAndStartUpRefuseAPrefixTheWorkUserCanWrite) {
  TempDir dir;
  fs::permissions(dir.path(), fs::perms(0711), fs::perm_options::replace);
  const fs::path open = dir.path() / "open";
  fs::create_directories(open / "jobs");
  fs::permissions(open, fs::perms(0777), fs::perm_options::replace);
  writeFile(dir.path() / "tokens", "reader read read-token-0123456789abcdef\n", 0600);
  writeFile(dir.path() / "agent.toml",
            "listen = \"127.0.0.1:0\"\nstate_dir = \"" + (dir.path() / "state").string() + "\"\ntokens_file = \"" +
                (dir.path() / "tokens").string() + "\"\n[work]\nrun_as = \"nobody\"\nallowed_command_prefixes = [\"" +
                (open / "jobs").string() + "/\"]\n[adb]\nserver = \"127.0.0.1:1\"\nadb_path = \"/bin/false\"\n",
            0600);
  const std::string config = (dir.path() / "agent.toml").string();
  auto check = runCommand({PHONEFARM_AGENT_BINARY, "check-config", "--config", config});
  EXPECT_NE(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find(open.string() + " is writable"), std::string::npos) << check.output;
  auto run = runCommand({PHONEFARM_AGENT_BINARY, "--config", config}, {}, 20s);
  EXPECT_FALSE(run.timed_out) << "the agent started anyway";
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find(open.string() + " is writable"), std::string::npos) << run.output;
  // Closed again, the same config is fine.
  fs::permissions(open, fs::perms(0755), fs::perm_options::replace);
  auto fixed = runCommand({PHONEFARM_AGENT_BINARY, "check-config", "--config", config});
  EXPECT_EQ(fixed.exit_code, 0) << fixed.output;
}

// Work as the agent's own uid could signal the agent and its shims: the
// config is refused, naming run_as and the uid.
TEST(RunAsSelf, CheckConfigAndStartUpRefuseRunAsTheAgentsOwnUser) {
  TempDir dir;
  const passwd* self = ::getpwuid(::geteuid());
  ASSERT_NE(self, nullptr);
  fs::create_directories(dir.path() / "jobs");
  writeFile(dir.path() / "tokens", "reader read read-token-0123456789abcdef\n", 0600);
  auto writeConfig = [&](const std::string& run_as) {
    writeFile(dir.path() / "agent.toml",
              "listen = \"127.0.0.1:0\"\nstate_dir = \"" + (dir.path() / "state").string() + "\"\ntokens_file = \"" +
                  (dir.path() / "tokens").string() + "\"\n[work]\nrun_as = \"" + run_as +
                  "\"\nallowed_command_prefixes = [\"" + (dir.path() / "jobs").string() +
                  "/\"]\n[adb]\nserver = \"127.0.0.1:1\"\nadb_path = \"/bin/false\"\n",
              0600);
  };
  writeConfig(self->pw_name);
  const std::string config = (dir.path() / "agent.toml").string();
  const std::string why = "work.run_as user '" + std::string(self->pw_name) + "' is uid " +
                          std::to_string(::geteuid()) + ", the agent's own";
  auto check = runCommand({PHONEFARM_AGENT_BINARY, "check-config", "--config", config});
  EXPECT_NE(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find(why), std::string::npos) << check.output;
  auto run = runCommand({PHONEFARM_AGENT_BINARY, "--config", config}, {}, 20s);
  EXPECT_FALSE(run.timed_out) << "the agent started anyway";
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find(why), std::string::npos) << run.output;
  // Another user is fine (one that does not exist too: nothing can run).
  writeConfig("phonefarm-test-no-such-user");
  auto fixed = runCommand({PHONEFARM_AGENT_BINARY, "check-config", "--config", config});
  EXPECT_EQ(fixed.exit_code, 0) << fixed.output;
}

}  // namespace
}  // namespace phonefarm::testing
