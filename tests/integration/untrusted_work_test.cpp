// Jobs are third-party scripts: what one controls (its env, its files, its
// commands' paths) must not wedge the agent or turn an allowed command into
// another one. Each test reproduces an attack against the real daemon.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <string>

#include "agent/api/env_policy.hpp"
#include "tests/integration/work_fixture.hpp"
#include "tests/support/run_command.hpp"

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string submitBody(const std::string& id, const std::string& command, const boost::json::object& env) {
  boost::json::object item{{"command", boost::json::array{command}}, {"env", env}};
  return boost::json::serialize(boost::json::object{
      {"process_id", id}, {"phone_id", "phone_01"}, {"account_id", "a"}, {"queue_items", boost::json::array{item}}});
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
  for (std::string_view pattern : api::deniedEnvPatterns()) {
    std::string name(pattern);
    if (name.ends_with('*')) name = name.substr(0, name.size() - 1) + "X";
    EXPECT_EQ(call("POST", "/processes", submitBody("pat-1", job, {{name, "1"}})).status, 422) << name;
  }
  EXPECT_EQ(call("POST", "/processes", submitBody("env-ok", job, {{"APP_TOKEN", "1"}, {"LANG", "C"}})).status, 201);
}

class AllowedEnvTest : public AgentFixture {
 protected:
  std::string workConfig() const override {
    return AgentFixture::workConfig() + "allowed_env = [\"APP_TOKEN\", \"LD_LIBRARY_PATH\"]\n";
  }
};

TEST_F(AllowedEnvTest, AnAllowlistReplacesTheDenylist) {
  const std::string job = (jobsDir() / "post.sh").string();
  EXPECT_EQ(call("POST", "/processes", submitBody("a-1", job, {{"APP_TOKEN", "1"}})).status, 201);
  EXPECT_EQ(call("POST", "/processes", submitBody("a-2", job, {{"LD_LIBRARY_PATH", "/opt/lib"}})).status, 201);
  auto r = call("POST", "/processes", submitBody("a-3", job, {{"LANG", "C"}}));
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("work.allowed_env"), std::string::npos) << r.body;
}

class UntrustedWorkTest : public WorkFixture {
 protected:
  // /healthz answered within 1 s: the event loop is not wedged.
  void expectResponsive() {
    HttpClient client("127.0.0.1", port_);
    client.setTimeout(1000ms);
    const auto start = std::chrono::steady_clock::now();
    auto r = client.get("/healthz");
    EXPECT_EQ(r.status, 200);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms);
  }

  static bool terminal(const boost::json::object& p) {
    const auto& s = p.at("status");
    return s == "succeeded" || s == "failed" || s == "cancelled";
  }
};

TEST_F(UntrustedWorkTest, AFifoInPlaceOfTheStatusFileDoesNotFreezeTheAgent) {
  // The job's working directory is its execution directory today: it plants
  // a FIFO where the agent reads the outcome, and blocks the shim's write.
  const std::string job =
      writeJob("fifo.sh", "#!/bin/sh\nrm -f status.json\nmkfifo status.json\nmkdir status.json.tmp\nexit 0\n");
  submitWork("fifo-1", {{job}});
  auto p = waitForProcess("fifo-1", terminal);
  expectResponsive();
  const auto& item = p.at("queue_items").at(0).as_object();
  ASSERT_TRUE(item.at("note").is_string()) << boost::json::serialize(p);
  EXPECT_NE(std::string(item.at("note").as_string()).find("not a regular file"), std::string::npos)
      << boost::json::serialize(p);
  // Recovery reads the same directory: a restart must not freeze either.
  restartAgent(SIGKILL);
  expectResponsive();
  EXPECT_EQ(getProcess("fifo-1").at("status"), p.at("status"));
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
  EXPECT_NE(std::string(item.at("note").as_string()).find("not under an allowed prefix"), std::string::npos)
      << boost::json::serialize(p);
  EXPECT_FALSE(fs::exists(ran)) << "the swapped-in command ran";
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

}  // namespace
}  // namespace phonefarm::testing
