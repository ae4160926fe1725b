// systemd/phonefarm-agent.service as systemd reads it: `systemd-analyze
// verify` accepts it without a warning, `systemd-analyze security --offline`
// rates its exposure at 3.5 or lower, and the settings the agent depends on
// (notify + watchdog, delegated cgroup, work outliving restarts, USB devices,
// the unprivileged service user and its ambient capabilities, the users and
// group membership from the sysusers file, the tokens file mode and the state
// dir from the tmpfiles file) are there.
//
// phonefarm-agent.socket verifies too and listens on the default `listen`.
//
// The unit is checked through a copy whose ExecStart=/ExecStartPre= name
// /bin/true: verify refuses a unit whose binaries are not installed. PID 1 is
// not systemd in CI containers; both verbs work offline (systemd >= 250;
// Debian 12 has 252), so every check below runs on Debian 12.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/run_command.hpp"

#ifndef PHONEFARM_SOURCE_DIR
#error "PHONEFARM_SOURCE_DIR must name the source tree (tests/CMakeLists.txt)"
#endif

namespace {

namespace fs = std::filesystem;

const fs::path kSourceDir = PHONEFARM_SOURCE_DIR;
const fs::path kServiceFile = kSourceDir / "systemd" / "phonefarm-agent.service";
const fs::path kSocketFile = kSourceDir / "systemd" / "phonefarm-agent.socket";
const fs::path kSysusersFile = kSourceDir / "systemd" / "phonefarm-agent.sysusers.conf";
const fs::path kTmpfilesFile = kSourceDir / "systemd" / "phonefarm-agent.tmpfiles.conf";
const fs::path kJobUnitFile = kSourceDir / "systemd" / "phonefarm-job@.service";
const fs::path kPolkitRuleFile = kSourceDir / "systemd" / "50-phonefarm-agent.rules";
constexpr const char* kAnalyze = "/usr/bin/systemd-analyze";

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

using phonefarm::testing::CommandResult;
using phonefarm::testing::runCommand;

// Every `Key=value` of the unit, in order (a key may repeat).
std::multimap<std::string, std::string> settings(const std::string& unit) {
  std::multimap<std::string, std::string> out;
  std::istringstream in(unit);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line[0] == ';' || line[0] == '[') continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    out.emplace(line.substr(0, eq), line.substr(eq + 1));
  }
  return out;
}

std::string setting(const std::multimap<std::string, std::string>& s, const std::string& key) {
  auto it = s.find(key);
  return it == s.end() ? "<unset>" : it->second;
}

class SystemdUnit : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/phonefarm-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    unit_text_ = readFile(kServiceFile);
    ASSERT_FALSE(unit_text_.empty()) << kServiceFile;
    ASSERT_TRUE(fs::exists(kAnalyze)) << kAnalyze << " is missing (scripts/setup installs the systemd package)";
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  // A copy of the unit (possibly edited) under the real unit name, its
  // binaries replaced by /bin/true.
  fs::path copyUnit(const std::string& text) const {
    const std::string binary = "/usr/bin/phonefarm-agent";
    std::string copy = text;
    for (auto pos = copy.find(binary); pos != std::string::npos; pos = copy.find(binary, pos)) {
      copy.replace(pos, binary.size(), "/bin/true");
    }
    const fs::path path = dir_ / "phonefarm-agent.service";
    std::ofstream(path) << copy;
    // The service requires its socket: verify looks for it next to the service.
    fs::copy_file(kSocketFile, dir_ / "phonefarm-agent.socket", fs::copy_options::overwrite_existing);
    return path;
  }

  CommandResult verify(const fs::path& unit) const {
    return runCommand({kAnalyze, "verify", "--man=no", unit.string()});
  }

  fs::path dir_;
  std::string unit_text_;
};

TEST_F(SystemdUnit, VerifyAcceptsItWithoutWarnings) {
  const auto r = verify(copyUnit(unit_text_));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // Unknown keys and bad values are warnings with exit code 0: the output
  // must be empty too.
  EXPECT_EQ(r.output, "");
}

// The check above can fail: a misspelt key is reported.
TEST_F(SystemdUnit, VerifyReportsAMisspeltKey) {
  std::string bad = unit_text_;
  const auto pos = bad.find("\nWatchdogSec=");
  ASSERT_NE(pos, std::string::npos);
  bad.insert(pos + std::string("\nWatchdogSec").size(), "s");
  const auto r = verify(copyUnit(bad));
  EXPECT_THAT(r.output, ::testing::HasSubstr("WatchdogSecs")) << r.output;
}

TEST_F(SystemdUnit, SecurityExposureIsAtMost2_9) {
  const auto r = runCommand({kAnalyze, "security", "--offline=true", "--no-pager", copyUnit(unit_text_).string()});
  // The exit code is 0 whatever the figure (no --threshold given).
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::smatch m;
  const std::regex overall(R"(Overall exposure level for phonefarm-agent\.service: ([0-9]+\.[0-9]))");
  ASSERT_TRUE(std::regex_search(r.output, m, overall)) << r.output;
  const double exposure = std::stod(m[1].str());
  EXPECT_LE(exposure, 2.9) << r.output;
  std::printf("exposure: %.1f\n", exposure);
}

TEST_F(SystemdUnit, HasTheSettingsTheAgentDependsOn) {
  const auto s = settings(unit_text_);
  EXPECT_EQ(setting(s, "Type"), "notify");  // READY=1 after recovery
  EXPECT_EQ(setting(s, "WatchdogSec"), "30");
  EXPECT_EQ(setting(s, "NotifyAccess"), "main");
  EXPECT_EQ(setting(s, "Delegate"), "yes");        // executions' cgroup leaves
  EXPECT_EQ(setting(s, "KillMode"), "process");    // work outlives the agent
  EXPECT_EQ(setting(s, "Restart"), "on-failure");  // watchdog timeouts included
  EXPECT_EQ(setting(s, "User"), "phonefarm");      // not root: see the unit's header comment
  EXPECT_EQ(setting(s, "Group"), "phonefarm");
  EXPECT_EQ(setting(s, "Environment"), "HOME=/var/lib/phonefarm-agent");  // adb's ~/.android under ProtectHome
  EXPECT_EQ(setting(s, "NoNewPrivileges"), "yes");
  EXPECT_EQ(setting(s, "ProtectSystem"), "strict");
  EXPECT_EQ(setting(s, "StateDirectory"), "phonefarm-agent");
  // The work user traverses the state dir to its execution dir and home.
  EXPECT_EQ(setting(s, "StateDirectoryMode"), "0711");
  EXPECT_EQ(setting(s, "UMask"), "0027");
  // The delegated subtree stays writable, /dev/bus/usb stays visible.
  EXPECT_NE(setting(s, "ProtectControlGroups"), "yes");
  EXPECT_NE(setting(s, "PrivateDevices"), "yes");
  EXPECT_EQ(setting(s, "DevicePolicy"), "closed");
  EXPECT_EQ(setting(s, "DeviceAllow"), "char-usb_device rw");
  // No capability at all: the job units' shim switches users
  // (phonefarm-job@.service), the agent only asks systemd over D-Bus.
  EXPECT_EQ(setting(s, "CapabilityBoundingSet"), "");
  EXPECT_EQ(setting(s, "AmbientCapabilities"), "");
  // Execution dirs carry no setgid bit, so this can stay on.
  EXPECT_EQ(setting(s, "RestrictSUIDSGID"), "yes");
  EXPECT_EQ(setting(s, "SystemCallFilter"), "@system-service");
  EXPECT_EQ(setting(s, "RestrictAddressFamilies"), "AF_UNIX AF_INET AF_INET6 AF_NETLINK");
}

// systemd holds the port (socket activation): the socket unit verifies, the
// service depends on it, and it listens where the agent's default `listen`
// is (the agent refuses a socket on any other address).
TEST_F(SystemdUnit, SocketHoldsTheDefaultListenAddress) {
  copyUnit(unit_text_);
  const auto r = verify(dir_ / "phonefarm-agent.socket");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");
  const auto socket = settings(readFile(kSocketFile));
  EXPECT_EQ(setting(socket, "ListenStream"), "127.0.0.1:8787");
  EXPECT_EQ(setting(socket, "ReusePort"), "no");    // no job may share the port
  EXPECT_EQ(setting(socket, "Accept"), "<unset>");  // one agent, not one per connection
  EXPECT_EQ(setting(socket, "WantedBy"), "sockets.target");
  const auto s = settings(unit_text_);
  EXPECT_EQ(setting(s, "Requires"), "phonefarm-agent.socket");
  EXPECT_THAT(unit_text_, ::testing::HasSubstr("\nAfter=phonefarm-agent.socket\n"));
}

TEST_F(SystemdUnit, SysusersCreatesTheServiceAndWorkUsers) {
  const std::string text = readFile(kSysusersFile);
  EXPECT_THAT(text, ::testing::ContainsRegex("\nu phonefarm -:phonefarm "));
  EXPECT_THAT(text, ::testing::ContainsRegex("\nu phonefarm-work "));
  EXPECT_THAT(text, ::testing::ContainsRegex("\ng phonefarm "));
  // The agent reads what the shim writes as phonefarm-work through its group.
  EXPECT_THAT(text, ::testing::HasSubstr("\nm phonefarm phonefarm-work\n"));
}

TEST_F(SystemdUnit, TmpfilesSetsConfigDirAndTokensModes) {
  const std::string text = readFile(kTmpfilesFile);
  EXPECT_THAT(text, ::testing::HasSubstr("\nd /etc/phonefarm-agent 0750 root phonefarm -\n"));
  // The agent refuses a tokens file that group or others can access.
  EXPECT_THAT(text, ::testing::HasSubstr("\nz /etc/phonefarm-agent/tokens 0600 phonefarm phonefarm -\n"));
  // The state dir is User='s before the first start (else systemd chowns the
  // whole tree, execution dirs included), and the work user's home exists.
  EXPECT_THAT(text, ::testing::HasSubstr("\nd /var/lib/phonefarm-agent 0711 phonefarm phonefarm -\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("\nd /var/lib/phonefarm-agent/work 0750 phonefarm-work phonefarm-work -\n"));
}

// phonefarm-job@.service, the job's sandbox: it verifies (as an instance),
// its exposure is printed, and it keeps what JITs, browsers and namespaces
// need: no W^X, no namespace ban, no syscall filter; Delegate=yes for the
// shim's cgroup split; the whole tree dies with the unit; ended instances
// are unloaded.
TEST_F(SystemdUnit, JobUnitIsTheJobsSandbox) {
  std::string text = readFile(kJobUnitFile);
  ASSERT_FALSE(text.empty()) << kJobUnitFile;
  const auto s = settings(text);
  EXPECT_EQ(setting(s, "ExecStart"),
            "/usr/bin/phonefarm-agent exec-shim --job-unit %i --config /etc/phonefarm-agent/agent.toml");
  EXPECT_EQ(setting(s, "Type"), "exec");
  EXPECT_EQ(setting(s, "User"), "phonefarm");
  EXPECT_EQ(setting(s, "AmbientCapabilities"), "CAP_SETUID CAP_SETGID CAP_KILL");
  EXPECT_EQ(setting(s, "CapabilityBoundingSet"), "CAP_SETUID CAP_SETGID CAP_KILL");
  EXPECT_EQ(setting(s, "NoNewPrivileges"), "yes");
  EXPECT_EQ(setting(s, "Delegate"), "yes");
  EXPECT_EQ(setting(s, "KillMode"), "control-group");
  EXPECT_EQ(setting(s, "CollectMode"), "inactive-or-failed");
  EXPECT_EQ(setting(s, "ProtectSystem"), "full");
  EXPECT_EQ(setting(s, "PrivateTmp"), "yes");
  for (const std::string key : {"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs"}) {
    EXPECT_EQ(setting(s, key), "yes") << key;
  }
  for (const std::string key :
       {"MemoryDenyWriteExecute", "RestrictNamespaces", "SystemCallFilter", "RestrictAddressFamilies"}) {
    EXPECT_EQ(setting(s, key), "<unset>") << key << " would break JITs, browsers or namespaces";
  }
  // The cgroup split needs a writable cgroupfs.
  EXPECT_NE(setting(s, "ProtectControlGroups"), "yes");

  const std::string binary = "/usr/bin/phonefarm-agent";
  for (auto pos = text.find(binary); pos != std::string::npos; pos = text.find(binary, pos)) {
    text.replace(pos, binary.size(), "/bin/true");
  }
  const fs::path instance = dir_ / "phonefarm-job@0123abcd-ef.service";
  std::ofstream(instance) << text;
  const auto r = verify(instance);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");
  const auto sec = runCommand({kAnalyze, "security", "--offline=true", "--no-pager", instance.string()});
  std::smatch m;
  const std::regex overall(R"(Overall exposure level for phonefarm-job@0123abcd-ef\.service: ([0-9]+\.[0-9]))");
  ASSERT_TRUE(std::regex_search(sec.output, m, overall)) << sec.output;
  std::printf("job unit exposure: %s\n", m[1].str().c_str());
}

// The polkit rule allows the agent's user start, stop and kill of job units
// only: the pattern is the unit name's whole grammar, anchored.
TEST_F(SystemdUnit, PolkitRuleAllowsOnlyJobUnits) {
  const std::string text = readFile(kPolkitRuleFile);
  ASSERT_FALSE(text.empty()) << kPolkitRuleFile;
  EXPECT_THAT(text, ::testing::HasSubstr("subject.user != \"phonefarm\""));
  EXPECT_THAT(text, ::testing::HasSubstr("action.id == \"org.freedesktop.systemd1.manage-units\""));
  EXPECT_THAT(text, ::testing::HasSubstr(R"(/^phonefarm-job@[A-Za-z0-9_-]+\.service$/.test(unit))"));
  EXPECT_THAT(text, ::testing::HasSubstr(R"((verb == "start" || verb == "stop" || verb == "kill"))"));
  EXPECT_THAT(text, ::testing::HasSubstr("return polkit.Result.NO;"));
  // The same pattern as the agent's own check of the instance name.
  const std::regex pattern("^phonefarm-job@[A-Za-z0-9_-]+\\.service$");
  EXPECT_TRUE(std::regex_match("phonefarm-job@6f1c2a9e-1b2c-4d3e-8f90-0123456789ab.service", pattern));
  EXPECT_FALSE(std::regex_match("phonefarm-job@x.service.d/../phonefarm-agent.service", pattern));
  EXPECT_FALSE(std::regex_match("phonefarm-agent.service", pattern));
}

}  // namespace
