// The exec shim as a job unit's ExecStart (agent/exec/job_unit_shim.hpp)
// against a hostile agent: the only things the agent controls are the argv
// and env files in the control dir, and whatever they say, the shim runs
// nothing but a command under the config's prefixes, never as root, never
// with an env name the config's env policy refuses. Checked on the options
// the shim derives and on the real entry point in a child process (a refused
// spec exits 125 and runs nothing). No systemd needed: every refusal happens
// before the cgroup split.
#include "agent/exec/job_unit_shim.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "agent/exec/exec_status.hpp"
#include "agent/exec/systemd_job_units.hpp"
#include "common/config/config.hpp"
#include "common/os/user_lookup.hpp"

namespace phonefarm::exec {
namespace {

namespace fs = std::filesystem;

constexpr const char* kId = "6f1c2a9e-1b2c-4d3e-8f90-0123456789ab";

class JobUnitShim : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/phonefarm-job-shim-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    fs::create_directories(dir_ / "jobs");
    fs::create_directories(dir_ / "state" / "executions" / kId);
    fs::create_directories(dir_ / "state" / "workdirs" / kId);
    job_ = dir_ / "jobs" / "job.sh";
    std::ofstream(job_) << "#!/bin/sh\ntouch \"$1\"\n";
    fs::permissions(job_, fs::perms::owner_all);
    config_.state_dir = dir_ / "state";
    config_.work.run_as = "nobody";
    config_.work.allowed_command_prefixes = {(dir_ / "jobs").string() + "/"};
    auto nobody = os::lookupUser("nobody");
    ASSERT_TRUE(nobody && *nobody);
    nobody_home_ = (*nobody)->home;
    writeEnv(agentEnv());
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  fs::path controlDir() const { return dir_ / "state" / "executions" / kId; }
  void writeArgv(const std::vector<std::string>& argv) const { ASSERT_TRUE(writeShimArgvFile(controlDir(), argv)); }
  void writeRawArgv(const std::string& bytes) const {
    fs::remove(controlDir() / kArgvFileName);
    std::ofstream(controlDir() / kArgvFileName, std::ios::binary) << bytes;
  }
  // What the agent writes for every command (executor_launch.cpp).
  std::vector<std::string> agentEnv() const {
    return {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + nobody_home_,
            "ANDROID_SERIAL=SERIAL-01",          "PHONEFARM_PROCESS_ID=p1",
            "PHONEFARM_CANCEL_FILE=/x",          std::string("PHONEFARM_EXECUTION_ID=") + kId};
  }
  void writeEnv(const std::vector<std::string>& env) const {
    fs::remove(controlDir() / kEnvFileName);
    ASSERT_TRUE(writeShimEnvFile(controlDir(), env));
  }
  std::string refusal(std::string_view id = kId) const {
    auto options = jobUnitShimOptions(config_, id);
    return options ? std::string("accepted") : options.error().message;
  }

  // The real entry point in a child, with config_ written as agent.toml.
  int runShimProcess() const {
    const fs::path config = dir_ / "agent.toml";
    std::ofstream out(config);
    out << "state_dir = \"" << config_.state_dir.string() << "\"\n[work]\nrun_as = \"" << config_.work.run_as
        << "\"\nallowed_command_prefixes = [\"" << config_.work.allowed_command_prefixes.front() << "\"]\n";
    if (config_.work.allowed_env) {
      out << "allowed_env = [";
      for (const auto& name : *config_.work.allowed_env) out << "\"" << name << "\", ";
      out << "]\n";
    }
    out.close();
    const pid_t pid = ::fork();
    if (pid == 0) _exit(runJobUnitShim(JobUnitShimArgs{config, kId}));
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  fs::path dir_;
  fs::path job_;
  std::string nobody_home_;
  AgentConfig config_;
};

TEST_F(JobUnitShim, ParsesOnlyItsTwoArguments) {
  auto ok = parseJobUnitShimArgs({"--job-unit", kId, "--config", "/etc/phonefarm-agent/agent.toml"});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->execution_id, kId);
  EXPECT_EQ(ok->config, "/etc/phonefarm-agent/agent.toml");
  EXPECT_FALSE(ok->after_exit);
  auto after = parseJobUnitShimArgs({"--job-unit", kId, "--config", "/c", "--after-exit"});
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_TRUE(after->after_exit);
  EXPECT_FALSE(isJobUnitShim({"--control-dir", "/c", "--", "/bin/x", "--job-unit"}));
  EXPECT_TRUE(isJobUnitShim({"--config", "/c", "--job-unit", kId}));
  EXPECT_FALSE(isJobUnitShim({"--control-dir", "/c", "--work-dir", "/w"}));
  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{{"--job-unit", "../../etc", "--config", "/c"},
                                             {"--job-unit", "a.b", "--config", "/c"},
                                             {"--job-unit", kId, "--config", "relative.toml"},
                                             {"--job-unit", kId},
                                             {"--config", "/c"},
                                             {"--job-unit", kId, "--config", "/c", "--run-as", "root"},
                                             {"--job-unit", kId, "--job-unit", kId, "--config", "/c"},
                                             {"--job-unit", kId, "--config"}}) {
    EXPECT_FALSE(parseJobUnitShimArgs(bad)) << ::testing::PrintToString(bad);
  }
}

TEST_F(JobUnitShim, TakesTheCommandUnderThePrefixesAndTheDirsOfTheId) {
  writeArgv({job_.string(), "an arg", ""});
  auto options = jobUnitShimOptions(config_, kId);
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options->control_dir, controlDir());
  EXPECT_EQ(options->work_dir, dir_ / "state" / "workdirs" / kId);
  EXPECT_EQ(options->run_as, "nobody");
  EXPECT_EQ(options->argv, (std::vector<std::string>{fs::canonical(job_).string(), "an arg", ""}));
}

TEST_F(JobUnitShim, TakesTheEnvFileOnceAndPassesTheAgentsOwnNames) {
  writeArgv({job_.string()});
  writeEnv([&] {
    auto env = agentEnv();
    env.push_back("APP_TOKEN=s3cret");
    return env;
  }());
  auto options = jobUnitShimOptions(config_, kId);
  ASSERT_TRUE(options) << options.error().message;
  ASSERT_TRUE(options->env.has_value());
  EXPECT_EQ(options->env->back(), "APP_TOKEN=s3cret");
  EXPECT_FALSE(fs::exists(controlDir() / kEnvFileName));  // taken: the values are off the disk
}

// A compromised agent writes a loader hook into the env file: the shim takes
// the policy from the root-owned config, refuses, and names the name only.
TEST_F(JobUnitShim, RefusesAnEnvFileWithALoaderHook) {
  writeArgv({job_.string()});
  auto env = agentEnv();
  env.push_back("LD_PRELOAD=/tmp/evil.so");
  env.push_back("BASH_ENV=/tmp/evil.sh");
  writeEnv(env);
  const std::string why = refusal();
  EXPECT_NE(why.find("env refused"), std::string::npos) << why;
  EXPECT_NE(why.find("LD_PRELOAD, BASH_ENV"), std::string::npos) << why;
  EXPECT_EQ(why.find("/tmp/evil"), std::string::npos) << "a value in the refusal: " << why;
  // PATH and HOME other than what the agent gives every command.
  for (const std::string& entry : {std::string("PATH=/tmp/bin:/usr/bin"), std::string("HOME=/tmp/dotfiles")}) {
    env = agentEnv();
    env.push_back(entry);
    writeEnv(env);
    EXPECT_NE(refusal().find(entry.substr(0, entry.find('='))), std::string::npos) << entry << ": " << refusal();
  }
}

TEST_F(JobUnitShim, RefusesAnEnvNameOutsideTheAllowlist) {
  writeArgv({job_.string()});
  config_.work.allowed_env = std::vector<std::string>{"APP_TOKEN"};
  auto env = agentEnv();
  env.push_back("APP_TOKEN=1");
  writeEnv(env);
  EXPECT_EQ(refusal(), "accepted");
  env.push_back("APP_OTHER=1");
  writeEnv(env);
  EXPECT_NE(refusal().find("APP_OTHER"), std::string::npos) << refusal();
  EXPECT_EQ(refusal().find("APP_TOKEN"), std::string::npos) << refusal();
}

TEST_F(JobUnitShim, TakesTheLogCapFromTheConfigItReads) {
  writeArgv({job_.string()});
  config_.work.log_max_bytes = 12345;
  auto options = jobUnitShimOptions(config_, kId);
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options->log_max_bytes, 12345u);
}

TEST_F(JobUnitShim, RefusesACommandOutsideThePrefixes) {
  writeArgv({"/bin/sh", "-c", "id"});
  EXPECT_NE(refusal().find("not under an allowed prefix"), std::string::npos) << refusal();
  // Through "..", and through a symlink inside the prefix.
  writeArgv({(dir_ / "jobs" / ".." / ".." / ".." / "bin" / "sh").string()});
  EXPECT_NE(refusal().find("not under an allowed prefix"), std::string::npos) << refusal();
  fs::create_symlink("/bin/sh", dir_ / "jobs" / "sh");
  writeArgv({(dir_ / "jobs" / "sh").string()});
  EXPECT_NE(refusal().find("not under an allowed prefix"), std::string::npos) << refusal();
  writeArgv({"jobs/job.sh"});
  EXPECT_NE(refusal().find("not an absolute path"), std::string::npos) << refusal();
}

TEST_F(JobUnitShim, RefusesRootAndUnknownUsers) {
  writeArgv({job_.string()});
  config_.work.run_as = "root";
  EXPECT_NE(refusal().find("refusing to run work as root"), std::string::npos) << refusal();
  config_.work.run_as = "phonefarm-no-such-user";
  EXPECT_NE(refusal().find("does not exist"), std::string::npos) << refusal();
}

TEST_F(JobUnitShim, RefusesABadArgvFileOrId) {
  writeRawArgv(job_.string());  // no NUL at the end
  EXPECT_NE(refusal().find("NUL"), std::string::npos) << refusal();
  writeRawArgv("");
  EXPECT_NE(refusal().find("NUL"), std::string::npos) << refusal();
  fs::remove(controlDir() / kArgvFileName);
  std::ofstream(dir_ / "elsewhere", std::ios::binary) << job_.string() << '\0';
  fs::create_symlink(dir_ / "elsewhere", controlDir() / kArgvFileName);
  EXPECT_NE(refusal().find("open"), std::string::npos) << refusal();  // O_NOFOLLOW: ELOOP
  EXPECT_NE(refusal("../executions").find("is not [A-Za-z0-9_-]"), std::string::npos);
  EXPECT_NE(refusal("").find("is not [A-Za-z0-9_-]"), std::string::npos);
  EXPECT_FALSE(writeShimArgvFile(controlDir(), {job_.string(), std::string("a\0b", 3)}));
}

// The real shim: a hostile spec exits 125 and the command never runs.
TEST_F(JobUnitShim, AHostileSpecRunsNothing) {
  const fs::path marker = dir_ / "state" / "workdirs" / kId / "ran";
  writeArgv({"/usr/bin/touch", marker.string()});
  EXPECT_EQ(runShimProcess(), kShimExitRefused);
  EXPECT_FALSE(fs::exists(marker));
  writeArgv({job_.string(), marker.string()});
  config_.work.run_as = "root";
  EXPECT_EQ(runShimProcess(), kShimExitRefused);
  EXPECT_FALSE(fs::exists(marker));
  // An allowed command with a loader hook, or a name the allowlist lacks.
  config_.work.run_as = "nobody";
  auto env = agentEnv();
  env.push_back("LD_PRELOAD=/tmp/evil.so");
  writeEnv(env);
  EXPECT_EQ(runShimProcess(), kShimExitRefused);
  EXPECT_FALSE(fs::exists(marker));
  // The item ends with the reason (names only), not as lost.
  auto status = readExecStatus(controlDir());
  ASSERT_TRUE(status) << status.error().message;
  ASSERT_TRUE(*status);
  EXPECT_EQ((*status)->exit_code, 127);
  ASSERT_TRUE((*status)->error.has_value());
  EXPECT_NE((*status)->error->find("refused by the job unit's shim: env refused"), std::string::npos)
      << *(*status)->error;
  EXPECT_NE((*status)->error->find("LD_PRELOAD"), std::string::npos);
  EXPECT_EQ((*status)->error->find("evil.so"), std::string::npos);
  config_.work.allowed_env = std::vector<std::string>{"APP_TOKEN"};
  env = agentEnv();
  env.push_back("APP_OTHER=1");
  writeEnv(env);
  EXPECT_EQ(runShimProcess(), kShimExitRefused);
  EXPECT_FALSE(fs::exists(marker));
}

// ExecStopPost: what the job left (its own dirs, one locked with chmod 000
// inside another) becomes group-writable so the agent can delete it; a link
// is not followed, and nothing outside the work dir changes.
TEST_F(JobUnitShim, AfterExitOpensTheWorkDirToTheGroup) {
  auto nobody = os::lookupUser("nobody");
  ASSERT_TRUE(nobody && *nobody);
  const fs::path work = dir_ / "state" / "workdirs" / kId;
  fs::create_directories(work / "a" / "b");
  std::ofstream(work / "a" / "b" / "file") << "x";
  std::ofstream(dir_ / "outside") << "x";
  fs::permissions(dir_ / "outside", fs::perms::owner_read | fs::perms::owner_write);
  ::chown((dir_ / "outside").c_str(), (*nobody)->uid, (*nobody)->gid);
  fs::create_symlink(dir_ / "outside", work / "a" / "link");
  for (const auto& p : {work / "a", work / "a" / "b", work / "a" / "b" / "file"}) {
    ASSERT_EQ(::chown(p.c_str(), (*nobody)->uid, (*nobody)->gid), 0);
  }
  ::lchown((work / "a" / "link").c_str(), (*nobody)->uid, (*nobody)->gid);
  fs::permissions(work / "a" / "b" / "file", fs::perms::owner_read);
  fs::permissions(work / "a" / "b", fs::perms::none);
  fs::permissions(work / "a", fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  ::chmod(dir_.c_str(), 0755);  // nobody must reach the work dir
  ::chmod((dir_ / "state").c_str(), 0755);
  ::chmod((dir_ / "state" / "workdirs").c_str(), 0755);
  ::chmod(work.c_str(), 0777);

  const pid_t pid = ::fork();
  if (pid == 0) _exit(openWorkDirToGroup(config_, kId));
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kShimExitOk);
  auto mode = [](const fs::path& p) {
    struct stat st {};
    ::lstat(p.c_str(), &st);
    return st.st_mode & 07777;
  };
  EXPECT_EQ(mode(work / "a"), 0770u);
  EXPECT_EQ(mode(work / "a" / "b"), 0770u);
  EXPECT_EQ(mode(work / "a" / "b" / "file"), 0660u);
  EXPECT_EQ(mode(dir_ / "outside"), 0600u);  // through the link: untouched
}

TEST(JobUnitName, IsTheTemplateInstanceOfAValidId) {
  auto name = jobUnitName(kId);
  ASSERT_TRUE(name);
  EXPECT_EQ(*name, std::string("phonefarm-job@") + kId + ".service");
  for (const std::string& bad : std::vector<std::string>{"", "a/b", "a.b", "a b", "x\\x2d", std::string(65, 'a')}) {
    EXPECT_FALSE(jobUnitName(bad)) << bad;
  }
  EXPECT_EQ(jobUnitCgroup("phonefarm-job@x.service"),
            "/system.slice/system-phonefarm\\x2djob.slice/phonefarm-job@x.service");
}

}  // namespace
}  // namespace phonefarm::exec
