// Unit tests for the agent.toml loader: the defaults match docs/design.md, every
// key is read, and every mistake an operator can make is a ConfigError that
// names the dotted key and the line it is on.
#include "common/config/config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "common/config/dev_config.hpp"

namespace phonefarm {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

// The message of the ConfigError that parsing `text` throws ("" if none).
std::string parseError(std::string_view text) {
  try {
    parseConfig(text, "agent.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigTest, EmptyFileGivesTheDesignDefaults) {
  const AgentConfig c = parseConfig("", "agent.toml");
  EXPECT_EQ(c.listen.host, "127.0.0.1");
  EXPECT_EQ(c.listen.port, 8787);
  EXPECT_EQ(c.state_dir, "/var/lib/phonefarm-agent");
  EXPECT_EQ(c.tokens_file, "/etc/phonefarm-agent/tokens");
  EXPECT_EQ(c.http.first_request_timeout, 5s);
  EXPECT_EQ(c.http.header_timeout, 10s);
  EXPECT_EQ(c.http.idle_timeout, 60s);
  EXPECT_EQ(c.http.request_timeout, 30s);
  EXPECT_EQ(c.http.max_body_bytes, 65536u);
  EXPECT_EQ(c.http.max_connections, 512u);
  EXPECT_FALSE(c.http.tls.has_value());  // plain HTTP unless configured
  EXPECT_TRUE(c.http.metrics_require_token);
  EXPECT_EQ(c.work.run_as, "phonefarm-work");
  EXPECT_EQ(c.work.allowed_command_prefixes, std::vector<std::string>{"/opt/phonefarm/jobs/"});
  EXPECT_EQ(c.work.allowed_env, std::nullopt);
  EXPECT_EQ(c.work.cgroup_root, "");
  EXPECT_TRUE(c.work.wait_for_device);
  EXPECT_EQ(c.work.on_shutdown, ShutdownPolicy::kKeep);
  EXPECT_EQ(c.work.launcher, WorkLauncher::kDirect);
  EXPECT_EQ(c.adb.server_host, "127.0.0.1");
  EXPECT_EQ(c.adb.server_port, 5037);
  EXPECT_EQ(c.adb.adb_path, "/usr/bin/adb");
  EXPECT_FALSE(c.adb.replace_foreign_server);
  EXPECT_TRUE(c.reset.on_forced_cancel);
  EXPECT_EQ(c.reset.adb_reconnect_timeout, 20s);
  EXPECT_TRUE(c.reset.usb_reset);
  EXPECT_EQ(c.reset.usb_reset_timeout, 30s);
  EXPECT_FALSE(c.reset.hub_power_cycle);
  EXPECT_EQ(c.reset.hub_power_off, 3s);
  EXPECT_TRUE(c.heal.enabled);
  EXPECT_EQ(c.heal.after, 30s);
  EXPECT_EQ(c.heal.backoff_max, 1800s);
  EXPECT_EQ(c.heal.probe_interval, 300s);
  EXPECT_EQ(c.heal.flap_count, 3);
  EXPECT_EQ(c.heal.flap_window, 600s);
  EXPECT_EQ(c.heal.hub_window, 10s);
  EXPECT_EQ(c.retention.processes_days, 30);
  EXPECT_EQ(c.retention.executions_days, 7);
  EXPECT_EQ(c.retention.sweep_interval, 300s);
  EXPECT_EQ(c.storage.min_free_bytes, 512u * 1024 * 1024);
  EXPECT_EQ(c.storage.reserve_bytes, 32u * 1024 * 1024);
  EXPECT_EQ(c.http.max_event_streams, 32u);
  EXPECT_EQ(c.events.retention, std::chrono::days(7));
  EXPECT_EQ(c.events.max_events, 1'000'000);
  EXPECT_EQ(c.events.stream_buffer, 4096u);
  EXPECT_EQ(c.work.log_max_bytes, 64u * 1024 * 1024);
  EXPECT_TRUE(c.phones.empty());
}

TEST(ConfigTest, RetentionDaysMayBeFractionsAndStorageBytesZero) {
  const AgentConfig c = parseConfig(
      "[retention]\nprocesses_days = 0.5\nexecutions_days = 0.00001\nsweep_interval_seconds = 1\n"
      "[storage]\nmin_free_bytes = 0\nreserve_bytes = 1048576\n",
      "agent.toml");
  EXPECT_EQ(c.retention.processes_days, 0.5);
  EXPECT_EQ(c.retention.executions_days, 0.00001);
  EXPECT_EQ(c.retention.sweep_interval, 1s);
  EXPECT_EQ(c.storage.min_free_bytes, 0u);
  EXPECT_EQ(c.storage.reserve_bytes, 1048576u);
  EXPECT_EQ(parseConfig("[retention]\nprocesses_days = 90\n", "x").retention.processes_days, 90);
}

constexpr std::string_view kFullConfig = R"(# every key, none at its default
listen = "[::1]:9000"
state_dir = "/srv/pf/state"
tokens_file = "/srv/pf/tokens"
[http]
first_request_timeout_seconds = 3
header_timeout_seconds = 5
idle_timeout_seconds = 120
request_timeout_seconds = 45
max_body_bytes = 1048576
max_connections = 64
metrics_require_token = false
max_event_streams = 5
[events]
retention_days = 2
max_events = 5000
stream_buffer = 100
[work]
run_as = "worker"
allowed_command_prefixes = ["/opt/a/", "/usr/local/bin/job-"]
cgroup_root = "/sys/fs/cgroup/pf.slice"
wait_for_device = false
on_shutdown = "cancel"
log_max_bytes = 1048576
launcher = "systemd"
[adb]
server = "10.0.0.2:5038"
adb_path = "/opt/android/adb"
replace_foreign_server = true
[reset]
on_forced_cancel = false
adb_reconnect_timeout_seconds = 7
usb_reset = false
usb_reset_timeout_seconds = 8
hub_power_cycle = true
hub_power_off_seconds = 9
[heal]
enabled = false
after_seconds = 11
backoff_max_seconds = 600
probe_interval_seconds = 12
flap_count = 5
flap_window_seconds = 13
hub_window_seconds = 14
[[phones]]
id = "phone_01"
serial = "R58M123ABC"
usb_port = "1-1.4"
[[phones]]
id = "rack2:slot.7-b"
serial = "192.168.1.20:5555"
)";

TEST(ConfigTest, FullFileSetsEveryKey) {
  const AgentConfig c = parseConfig(kFullConfig, "agent.toml");
  EXPECT_EQ(c.listen.host, "::1");
  EXPECT_EQ(c.listen.port, 9000);
  EXPECT_EQ(c.state_dir, "/srv/pf/state");
  EXPECT_EQ(c.tokens_file, "/srv/pf/tokens");
  EXPECT_EQ(c.http.first_request_timeout, 3s);
  EXPECT_EQ(c.http.header_timeout, 5s);
  EXPECT_EQ(c.http.idle_timeout, 120s);
  EXPECT_EQ(c.http.request_timeout, 45s);
  EXPECT_EQ(c.http.max_body_bytes, 1048576u);
  EXPECT_EQ(c.http.max_connections, 64u);
  EXPECT_FALSE(c.http.metrics_require_token);
  EXPECT_EQ(c.work.run_as, "worker");
  EXPECT_EQ(c.work.allowed_command_prefixes, (std::vector<std::string>{"/opt/a/", "/usr/local/bin/job-"}));
  EXPECT_EQ(c.work.cgroup_root, "/sys/fs/cgroup/pf.slice");
  EXPECT_FALSE(c.work.wait_for_device);
  EXPECT_EQ(c.work.on_shutdown, ShutdownPolicy::kCancel);
  EXPECT_EQ(c.work.log_max_bytes, 1048576u);
  EXPECT_EQ(c.work.launcher, WorkLauncher::kSystemd);
  EXPECT_EQ(c.adb.server_host, "10.0.0.2");
  EXPECT_EQ(c.adb.server_port, 5038);
  EXPECT_EQ(c.adb.adb_path, "/opt/android/adb");
  EXPECT_TRUE(c.adb.replace_foreign_server);
  EXPECT_FALSE(c.reset.on_forced_cancel);
  EXPECT_EQ(c.reset.adb_reconnect_timeout, 7s);
  EXPECT_FALSE(c.reset.usb_reset);
  EXPECT_EQ(c.reset.usb_reset_timeout, 8s);
  EXPECT_TRUE(c.reset.hub_power_cycle);
  EXPECT_EQ(c.reset.hub_power_off, 9s);
  EXPECT_FALSE(c.heal.enabled);
  EXPECT_EQ(c.heal.after, 11s);
  EXPECT_EQ(c.heal.backoff_max, 600s);
  EXPECT_EQ(c.heal.probe_interval, 12s);
  EXPECT_EQ(c.heal.flap_count, 5);
  EXPECT_EQ(c.heal.flap_window, 13s);
  EXPECT_EQ(c.heal.hub_window, 14s);
  EXPECT_EQ(c.http.max_event_streams, 5u);
  EXPECT_EQ(c.events.retention, std::chrono::days(2));
  EXPECT_EQ(c.events.max_events, 5000);
  EXPECT_EQ(c.events.stream_buffer, 100u);
  ASSERT_EQ(c.phones.size(), 2u);
  EXPECT_EQ(c.phones[0].id, "phone_01");
  EXPECT_EQ(c.phones[0].serial, "R58M123ABC");
  EXPECT_EQ(c.phones[0].usb_port, "1-1.4");
  EXPECT_EQ(c.phones[1].id, "rack2:slot.7-b");
  EXPECT_EQ(c.phones[1].serial, "192.168.1.20:5555");
  EXPECT_EQ(c.phones[1].usb_port, std::nullopt);
}

// The example in docs/design.md ("Configuration"), comments included, must stay a valid file.
constexpr std::string_view kDesignExample = R"(listen = "127.0.0.1:8787"
state_dir = "/var/lib/phonefarm-agent"
tokens_file = "/etc/phonefarm-agent/tokens"   # lines: NAME SCOPE SECRET|sha256:HEX
[http]
first_request_timeout_seconds = 5
header_timeout_seconds = 10
idle_timeout_seconds = 60
request_timeout_seconds = 30
max_body_bytes = 65536
max_connections = 512
[work]
run_as = "phonefarm-work"
allowed_command_prefixes = ["/opt/phonefarm/jobs/"]
cgroup_root = ""              # "" = detect our delegated subtree
wait_for_device = true        # start items only on phones in `device` state
on_shutdown = "keep"          # or "cancel"
log_max_bytes = "64M"         # per stream (stdout.log, stderr.log); the rest is dropped
[adb]
server = "127.0.0.1:5037"
adb_path = "/usr/bin/adb"
replace_foreign_server = false  # true: stop a server of another adb version and start our own
[reset]
on_forced_cancel = true
adb_reconnect_timeout_seconds = 20
usb_reset = true
usb_reset_timeout_seconds = 30
hub_power_cycle = false
hub_power_off_seconds = 3
[heal]
enabled = true
after_seconds = 30
backoff_max_seconds = 1800
probe_interval_seconds = 300
flap_count = 3
flap_window_seconds = 600
hub_window_seconds = 10
[retention]
processes_days = 30           # terminal processes, their items, audit trail, old resets
executions_days = 7           # execution directories (logs) of ended items
sweep_interval_seconds = 300
[storage]
min_free_bytes = "512M"       # below it, new submissions get 503 (bytes, or K/M/G/T)
reserve_bytes = "32M"         # kept for the store's commits on a full disk
[[phones]]                    # one per phone on this rack
id = "phone_01"
serial = "R58M123ABC"         # adb serial; "host:port" for network phones
usb_port = "1-1.4"            # optional bus-port path, for usb_reset/hub power
)";

TEST(ConfigTest, DesignExampleParses) {
  const AgentConfig c = parseConfig(kDesignExample, "agent.toml");
  EXPECT_EQ(c.http.max_connections, 512u);
  EXPECT_EQ(c.retention.executions_days, 7);
  EXPECT_EQ(c.storage.reserve_bytes, 33554432u);
  ASSERT_EQ(c.phones.size(), 1u);
  EXPECT_EQ(c.phones[0].usb_port, "1-1.4");
}

TEST(ConfigTest, EmptyCommandPrefixListIsKept) {
  EXPECT_TRUE(parseConfig("[work]\nallowed_command_prefixes = []\n", "x").work.allowed_command_prefixes.empty());
  EXPECT_EQ(parseConfig("[work]\nallowed_env = [\"APP_TOKEN\", \"_X1\"]\n", "x").work.allowed_env,
            (std::vector<std::string>{"APP_TOKEN", "_X1"}));
  EXPECT_EQ(parseConfig("[work]\nallowed_env = []\n", "x").work.allowed_env, std::vector<std::string>{});
}

TEST(ConfigTest, FindPhoneSearchesById) {
  const AgentConfig c = parseConfig(kFullConfig, "agent.toml");
  ASSERT_NE(c.findPhone("rack2:slot.7-b"), nullptr);
  EXPECT_EQ(c.findPhone("rack2:slot.7-b")->serial, "192.168.1.20:5555");
  EXPECT_EQ(c.findPhone("phone_01"), &c.phones[0]);
  EXPECT_EQ(c.findPhone("R58M123ABC"), nullptr);  // a serial is not an id
  EXPECT_EQ(c.findPhone(""), nullptr);
}

// One rejected file and the exact message it must produce.
struct BadConfig {
  const char* label;
  const char* toml;
  const char* message;
};

class RejectedConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(RejectedConfigTest, NamesKeyAndLine) { EXPECT_EQ(parseError(GetParam().toml), GetParam().message); }

const BadConfig kUnknownKeys[] = {
    {"TopLevel", "listen = \"127.0.0.1:1\"\nlisten_port = 1\n", "agent.toml:2: unknown key 'listen_port'"},
    {"InHttp", "[http]\nheader_timeout_seconds = 5\n\nheader_timeout = 5\n",
     "agent.toml:4: unknown key 'http.header_timeout'"},
    {"InWork", "[work]\nrunas = \"x\"\n", "agent.toml:2: unknown key 'work.runas'"},
    {"InAdb", "[adb]\nport = 5037\n", "agent.toml:2: unknown key 'adb.port'"},
    {"InReset", "[reset]\n\nusb_reset_seconds = 3\n", "agent.toml:3: unknown key 'reset.usb_reset_seconds'"},
    {"InHeal", "[heal]\nafter = 3\n", "agent.toml:2: unknown key 'heal.after'"},
    {"InEvents", "[events]\nretention = 3\n", "agent.toml:2: unknown key 'events.retention'"},
    {"UnknownTable", "\n[metrics]\nport = 1\n", "agent.toml:2: unknown key 'metrics'"},
    {"NestedTable", "[http]\n[http.tls]\ncert = \"x\"\n", "agent.toml:2: unknown key 'http.tls'"},
    {"DottedKey", "work.extra.deep = 1\n", "agent.toml:1: unknown key 'work.extra'"},
    {"InSecondPhone",
     "[[phones]]\nid = \"a\"\nserial = \"s1\"\n[[phones]]\nid = \"b\"\nserial = \"s2\"\nport = \"1-1\"\n",
     "agent.toml:7: unknown key 'phones[1].port'"},
    {"EarliestReported", "[http]\nzz = 1\naa = 2\n", "agent.toml:2: unknown key 'http.zz'"},
};
INSTANTIATE_TEST_SUITE_P(UnknownKey, RejectedConfigTest, ::testing::ValuesIn(kUnknownKeys),
                         [](const auto& param_info) { return std::string(param_info.param.label); });

const BadConfig kWrongTypes[] = {
    {"Listen", "listen = 8787\n", "agent.toml:1: 'listen' must be a string"},
    {"StateDir", "\nstate_dir = [\"/a\"]\n", "agent.toml:2: 'state_dir' must be a string"},
    {"TokensFile", "tokens_file = true\n", "agent.toml:1: 'tokens_file' must be a string"},
    {"HttpNotTable", "http = 5\n", "agent.toml:1: 'http' must be a table"},
    {"MaxConnectionsString", "[http]\n\nmax_connections = \"512\"\n",
     "agent.toml:3: 'http.max_connections' must be an integer"},
    {"TimeoutFloat", "[http]\nidle_timeout_seconds = 1.5\n",
     "agent.toml:2: 'http.idle_timeout_seconds' must be an integer"},
    {"RunAsInt", "[work]\nrun_as = 1000\n", "agent.toml:2: 'work.run_as' must be a string"},
    {"AllowedEnvName", "[work]\nallowed_env = [\"1X\"]\n",
     "agent.toml:2: 'work.allowed_env[0]' must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"},
    {"PrefixesString", "[work]\nallowed_command_prefixes = \"/opt\"\n",
     "agent.toml:2: 'work.allowed_command_prefixes' must be an array of absolute paths"},
    {"PrefixElement", "[work]\nallowed_command_prefixes = [\"/opt\", 3]\n",
     "agent.toml:2: 'work.allowed_command_prefixes[1]' must be a string"},
    {"MetricsRequireTokenString", "[http]\nmetrics_require_token = \"no\"\n",
     "agent.toml:2: 'http.metrics_require_token' must be a boolean (true or false)"},
    {"WaitForDeviceString", "[work]\nwait_for_device = \"yes\"\n",
     "agent.toml:2: 'work.wait_for_device' must be a boolean (true or false)"},
    {"OnShutdownBool", "[work]\non_shutdown = true\n", "agent.toml:2: 'work.on_shutdown' must be a string"},
    {"LauncherUnknown", "[work]\nlauncher = \"runc\"\n",
     "agent.toml:2: 'work.launcher' must be \"direct\" or \"systemd\" (got \"runc\")"},
    {"AdbServerInt", "[adb]\nserver = 5037\n", "agent.toml:2: 'adb.server' must be a string"},
    {"UsbResetInt", "[reset]\nusb_reset = 1\n", "agent.toml:2: 'reset.usb_reset' must be a boolean (true or false)"},
    {"HubPowerOffString", "[reset]\nhub_power_off_seconds = \"3\"\n",
     "agent.toml:2: 'reset.hub_power_off_seconds' must be an integer"},
    {"PhonesTable", "[phones]\nid = \"a\"\n", "agent.toml:1: 'phones' must be an array of tables ([[phones]])"},
    {"PhoneNotTable", "phones = [1]\n", "agent.toml:1: 'phones[0]' must be a table ([[phones]])"},
    {"PhoneIdInt", "[[phones]]\nid = 1\nserial = \"s\"\n", "agent.toml:2: 'phones[0].id' must be a string"},
};
INSTANTIATE_TEST_SUITE_P(WrongType, RejectedConfigTest, ::testing::ValuesIn(kWrongTypes),
                         [](const auto& param_info) { return std::string(param_info.param.label); });

const BadConfig kBadValues[] = {
    {"HealAfterZero", "[heal]\nafter_seconds = 0\n",
     "agent.toml:2: 'heal.after_seconds' must be from 1 to 86400 (got 0)"},
    {"FlapCountOne", "[heal]\nflap_count = 1\n", "agent.toml:2: 'heal.flap_count' must be from 2 to 1000 (got 1)"},
    {"HealEnabledString", "[heal]\nenabled = \"yes\"\n",
     "agent.toml:2: 'heal.enabled' must be a boolean (true or false)"},
    {"HeaderTimeoutZero", "[http]\nheader_timeout_seconds = 0\n",
     "agent.toml:2: 'http.header_timeout_seconds' must be from 1 to 86400 (got 0)"},
    {"IdleTimeoutTooBig", "[http]\nidle_timeout_seconds = 86401\n",
     "agent.toml:2: 'http.idle_timeout_seconds' must be from 1 to 86400 (got 86401)"},
    {"RequestTimeoutNegative", "[http]\nrequest_timeout_seconds = -5\n",
     "agent.toml:2: 'http.request_timeout_seconds' must be from 1 to 86400 (got -5)"},
    {"MaxBodyTooBig", "[http]\nmax_body_bytes = 67108865\n",
     "agent.toml:2: 'http.max_body_bytes' must be from 1 to 67108864 (got 67108865)"},
    {"MaxConnectionsZero", "[http]\nmax_connections = 0\n",
     "agent.toml:2: 'http.max_connections' must be from 1 to 100000 (got 0)"},
    {"MaxConnectionsTooBig", "[http]\nmax_connections = 100001\n",
     "agent.toml:2: 'http.max_connections' must be from 1 to 100000 (got 100001)"},
    {"ReconnectTooBig", "[reset]\nadb_reconnect_timeout_seconds = 3601\n",
     "agent.toml:2: 'reset.adb_reconnect_timeout_seconds' must be from 1 to 3600 (got 3601)"},
    {"UsbResetTimeoutZero", "[reset]\nusb_reset_timeout_seconds = 0\n",
     "agent.toml:2: 'reset.usb_reset_timeout_seconds' must be from 1 to 3600 (got 0)"},
    {"HubPowerOffZero", "[reset]\nhub_power_off_seconds = 0\n",
     "agent.toml:2: 'reset.hub_power_off_seconds' must be from 1 to 3600 (got 0)"},
    {"RunAsEmpty", "[work]\nrun_as = \"\"\n", "agent.toml:2: 'work.run_as' must be a non-empty user name"},
    {"RelativePrefix", "[work]\nallowed_command_prefixes = [\"jobs/\"]\n",
     "agent.toml:2: 'work.allowed_command_prefixes[0]' must be an absolute path (got \"jobs/\")"},
    {"RelativeCgroupRoot", "[work]\ncgroup_root = \"pf.slice\"\n",
     "agent.toml:2: 'work.cgroup_root' must be an absolute path (got \"pf.slice\")"},
    {"OnShutdownUnknown", "[work]\non_shutdown = \"kill\"\n",
     "agent.toml:2: 'work.on_shutdown' must be \"keep\" or \"cancel\" (got \"kill\")"},
    {"RelativeAdbPath", "[adb]\nadb_path = \"adb\"\n",
     "agent.toml:2: 'adb.adb_path' must be an absolute path (got \"adb\")"},
    {"AdbServerPortZero", "[adb]\nserver = \"127.0.0.1:0\"\n", "agent.toml:2: 'adb.server' must not use port 0"},
    {"AdbServerNoPort", "[adb]\nserver = \"127.0.0.1\"\n",
     "agent.toml:2: 'adb.server' is not a valid \"host:port\" (\"127.0.0.1\"): missing ':port'"},
    {"ListenBadPort", "listen = \"127.0.0.1:65536\"\n",
     "agent.toml:1: 'listen' is not a valid \"host:port\" (\"127.0.0.1:65536\"): port must be a number from 0 to "
     "65535"},
    {"StateDirEmpty", "state_dir = \"\"\n", "agent.toml:1: 'state_dir' must not be empty"},
    {"ProcessesDaysZero", "[retention]\nprocesses_days = 0\n",
     "agent.toml:2: 'retention.processes_days' must be from 0.00001 to 36500 days (got 0.000000)"},
    {"ExecutionsDaysNegative", "[retention]\nexecutions_days = -1.5\n",
     "agent.toml:2: 'retention.executions_days' must be from 0.00001 to 36500 days (got -1.500000)"},
    {"ExecutionsDaysNotANumber", "[retention]\nexecutions_days = \"7\"\n",
     "agent.toml:2: 'retention.executions_days' must be a number of days"},
    {"SweepIntervalZero", "[retention]\nsweep_interval_seconds = 0\n",
     "agent.toml:2: 'retention.sweep_interval_seconds' must be from 1 to 86400 (got 0)"},
    {"MinFreeNegative", "[storage]\nmin_free_bytes = -1\n",
     "agent.toml:2: 'storage.min_free_bytes' must not be negative"},
    {"ReserveFloat", "[storage]\nreserve_bytes = 1.5\n",
     "agent.toml:2: 'storage.reserve_bytes' must be a string such as \"32M\" or a number of bytes"},
    {"EventStreamsTooMany", "[http]\nmax_event_streams = 10001\n",
     "agent.toml:2: 'http.max_event_streams' must be from 0 to 10000 (got 10001)"},
    {"RetentionDaysZero", "[events]\nretention_days = 0\n",
     "agent.toml:2: 'events.retention_days' must be from 1 to 3650 (got 0)"},
    {"MaxEventsTooFew", "[events]\nmax_events = 999\n",
     "agent.toml:2: 'events.max_events' must be from 1000 to 1000000000 (got 999)"},
    {"StreamBufferTooSmall", "[events]\nstream_buffer = 15\n",
     "agent.toml:2: 'events.stream_buffer' must be from 16 to 1000000 (got 15)"},
};
INSTANTIATE_TEST_SUITE_P(BadValue, RejectedConfigTest, ::testing::ValuesIn(kBadValues),
                         [](const auto& param_info) { return std::string(param_info.param.label); });

const BadConfig kBadPhones[] = {
    {"MissingId", "\n[[phones]]\nserial = \"s\"\n", "agent.toml:2: 'phones[0].id' is required"},
    {"MissingSerial", "[[phones]]\nid = \"a\"\n", "agent.toml:1: 'phones[0].serial' is required"},
    {"IdEmpty", "[[phones]]\nid = \"\"\nserial = \"s\"\n",
     "agent.toml:2: 'phones[0].id' must be 1-128 characters of A-Z a-z 0-9 . _ : - (got \"\")"},
    {"IdBadChar", "[[phones]]\nid = \"phone/1\"\nserial = \"s\"\n",
     "agent.toml:2: 'phones[0].id' must be 1-128 characters of A-Z a-z 0-9 . _ : - (got \"phone/1\")"},
    {"SerialSpace", "[[phones]]\nid = \"a\"\nserial = \"R58 M1\"\n",
     "agent.toml:3: 'phones[0].serial' must be 1-128 characters without whitespace or control characters"},
    {"SerialControl", "[[phones]]\nid = \"a\"\nserial = \"R58\\u0001\"\n",
     "agent.toml:3: 'phones[0].serial' must be 1-128 characters without whitespace or control characters"},
    {"SerialEmpty", "[[phones]]\nid = \"a\"\nserial = \"\"\n",
     "agent.toml:3: 'phones[0].serial' must be 1-128 characters without whitespace or control characters"},
    {"UsbPortLetters", "[[phones]]\nid = \"a\"\nserial = \"s\"\nusb_port = \"usb1-1\"\n",
     "agent.toml:4: 'phones[0].usb_port' must be a USB bus-port path like \"1-1.4\" (got \"usb1-1\")"},
    {"UsbPortTrailingDot", "[[phones]]\nid = \"a\"\nserial = \"s\"\nusb_port = \"1-1.\"\n",
     "agent.toml:4: 'phones[0].usb_port' must be a USB bus-port path like \"1-1.4\" (got \"1-1.\")"},
    {"DuplicateId", "[[phones]]\nid = \"a\"\nserial = \"s1\"\n[[phones]]\nid = \"a\"\nserial = \"s2\"\n",
     "agent.toml:5: 'phones[1].id' duplicates phones[0] (\"a\")"},
    {"DuplicateSerial", "[[phones]]\nid = \"a\"\nserial = \"s1\"\n[[phones]]\nid = \"b\"\nserial = \"s1\"\n",
     "agent.toml:6: 'phones[1].serial' duplicates phones[0] (\"s1\")"},
};
INSTANTIATE_TEST_SUITE_P(BadPhone, RejectedConfigTest, ::testing::ValuesIn(kBadPhones),
                         [](const auto& param_info) { return std::string(param_info.param.label); });

const BadConfig kBadTls[] = {
    {"CertWithoutKey", "[http]\nmax_connections = 8\ntls_cert = \"/etc/pf/cert.pem\"\n",
     "agent.toml:3: 'http.tls_cert' is set but 'http.tls_key' is not (set both or neither)"},
    {"KeyWithoutCert", "[http]\n\ntls_key = \"/etc/pf/key.pem\"\n",
     "agent.toml:3: 'http.tls_key' is set but 'http.tls_cert' is not (set both or neither)"},
    {"CertEmpty", "[http]\ntls_cert = \"\"\ntls_key = \"/k\"\n", "agent.toml:2: 'http.tls_cert' must not be empty"},
    {"KeyNotString", "[http]\ntls_cert = \"/c\"\ntls_key = 1\n", "agent.toml:3: 'http.tls_key' must be a string"},
    {"TopLevelTlsCert", "tls_cert = \"/c\"\n", "agent.toml:1: unknown key 'tls_cert'"},
};
INSTANTIATE_TEST_SUITE_P(BadTls, RejectedConfigTest, ::testing::ValuesIn(kBadTls),
                         [](const auto& param_info) { return std::string(param_info.param.label); });

TEST(ConfigTest, TlsCertAndKeyTogetherEnableTls) {
  const AgentConfig c =
      parseConfig("[http]\ntls_cert = \"/etc/pf/cert.pem\"\ntls_key = \"/etc/pf/key.pem\"\n", "agent.toml");
  ASSERT_TRUE(c.http.tls.has_value());
  EXPECT_EQ(c.http.tls->cert, "/etc/pf/cert.pem");
  EXPECT_EQ(c.http.tls->key, "/etc/pf/key.pem");
}

TEST(ConfigTest, LongestPhoneIdIsAcceptedOneMoreIsNot) {
  const std::string ok = "[[phones]]\nid = \"" + std::string(128, 'a') + "\"\nserial = \"s\"\n";
  EXPECT_EQ(parseConfig(ok, "x").phones.at(0).id.size(), 128u);
  const std::string tooLong = "[[phones]]\nid = \"" + std::string(129, 'a') + "\"\nserial = \"s\"\n";
  EXPECT_THAT(parseError(tooLong), StartsWith("agent.toml:2: 'phones[0].id' must be 1-128 characters"));
}

TEST(ConfigTest, SyntaxErrorCarriesOriginLineAndDescription) {
  const std::string message = parseError("listen = \"127.0.0.1:1\"\n[http]\nmax_connections = \n");
  EXPECT_THAT(message, StartsWith("agent.toml:3: "));
  EXPECT_THAT(message, HasSubstr("expected value"));
}

TEST(ConfigTest, DuplicateTomlKeyIsASyntaxError) {
  EXPECT_THAT(parseError("[http]\nmax_connections = 1\nmax_connections = 2\n"), StartsWith("agent.toml:3: "));
}

TEST(ConfigTest, ControlCharactersInUnknownKeysAreEscaped) {
  EXPECT_EQ(parseError("\"bad\\nkey\" = 1\n"), "agent.toml:1: unknown key 'bad\\x0akey'");
}

TEST(ParseHostPortTest, AcceptsIpv4Ipv6AndLocalhost) {
  const ListenAddress v4 = parseHostPort("127.0.0.1:8787", "listen");
  EXPECT_EQ(v4.host, "127.0.0.1");
  EXPECT_EQ(v4.port, 8787);
  const ListenAddress v6 = parseHostPort("[::1]:8787", "listen");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 8787);
  const ListenAddress local = parseHostPort("localhost:0", "listen");
  EXPECT_EQ(local.host, "localhost");
  EXPECT_EQ(local.port, 0);
  EXPECT_EQ(parseHostPort("0.0.0.0:65535", "listen").port, 65535);
  EXPECT_EQ(parseHostPort("[fe80::1:2]:1", "listen").host, "fe80::1:2");
}

TEST(ParseHostPortTest, RejectsMalformedAddressesNamingTheKey) {
  const char* bad[] = {"",
                       "127.0.0.1",
                       "127.0.0.1:",
                       "127.0.0.1:http",
                       "127.0.0.1:65536",
                       "127.0.0.1:-1",
                       "127.0.0.1:123456",
                       ":8787",
                       "::1:8787",
                       "[::1]",
                       "[::1]8787",
                       "[::1:8787",
                       "[1.2.3.4]:80",
                       "example.com:80",
                       "256.0.0.1:80",
                       "127.1:80",
                       " 127.0.0.1:80",
                       "[localhost]:80"};
  for (const char* text : bad) {
    try {
      parseHostPort(text, "adb.server");
      ADD_FAILURE() << "accepted \"" << text << "\"";
    } catch (const ConfigError& e) {
      EXPECT_THAT(e.what(), StartsWith("'adb.server' is not a valid \"host:port\"")) << text;
    }
  }
}

TEST(DevConfigTest, ListensLocallyWithThreeEmulators) {
  const AgentConfig c = devConfig();
  EXPECT_EQ(c.listen.host, "127.0.0.1");
  EXPECT_EQ(c.listen.port, 8787);
  EXPECT_EQ(c.state_dir, "./var");
  EXPECT_EQ(c.tokens_file, "./var/tokens");
  EXPECT_EQ(c.work.run_as, "nobody");
  ASSERT_EQ(c.work.allowed_command_prefixes.size(), 1u);
  EXPECT_EQ(c.work.allowed_command_prefixes[0], (std::filesystem::absolute("./var") / "jobs").string() + "/");
  EXPECT_FALSE(c.work.wait_for_device);  // the demo job runs without emulators
  EXPECT_FALSE(c.reset.on_forced_cancel);
  ASSERT_EQ(c.phones.size(), 3u);
  const char* serials[] = {"emulator-5554", "emulator-5556", "emulator-5558"};
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(c.phones[i].id, "phone_0" + std::to_string(i + 1));
    EXPECT_EQ(c.phones[i].serial, serials[i]);
    EXPECT_EQ(c.phones[i].usb_port, std::nullopt);
  }
  EXPECT_NE(c.findPhone("phone_02"), nullptr);
}

class LoadConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "config_test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write(const std::string& name, std::string_view text) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(LoadConfigFileTest, ReadsFileAndUsesPathAsOrigin) {
  const auto good = write("good.toml", kFullConfig);
  EXPECT_EQ(loadConfigFile(good).phones.size(), 2u);

  const auto bad = write("bad.toml", "[http]\nmax_connections = \"many\"\n");
  try {
    loadConfigFile(bad);
    FAIL() << "accepted a bad file";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), bad.string() + ":2: 'http.max_connections' must be an integer");
  }
}

TEST_F(LoadConfigFileTest, MissingFileOrDirectoryIsAConfigError) {
  const auto missing = dir_ / "nope.toml";
  EXPECT_THROW(
      {
        try {
          loadConfigFile(missing);
        } catch (const ConfigError& e) {
          EXPECT_THAT(e.what(), StartsWith(missing.string() + ": "));
          throw;
        }
      },
      ConfigError);
  EXPECT_THROW(loadConfigFile(dir_), ConfigError);
}

TEST(ConfigTest, WorkLimitsDefaultToPidsOnly) {
  const AgentConfig c = parseConfig("", "agent.toml");
  EXPECT_EQ(c.work.pids_max, 4096);
  EXPECT_EQ(c.work.memory_max, std::nullopt);
  EXPECT_EQ(c.work.cpu_weight, std::nullopt);
}

TEST(ConfigTest, WorkLimitsAreRead) {
  const AgentConfig c = parseConfig("[work]\npids_max = 64\nmemory_max = \"64M\"\ncpu_weight = 50\n", "agent.toml");
  EXPECT_EQ(c.work.pids_max, 64);
  EXPECT_EQ(c.work.memory_max, 64ULL << 20);
  EXPECT_EQ(c.work.cpu_weight, 50);
  EXPECT_EQ(parseConfig("[work]\nmemory_max = 4294967296\n", "agent.toml").work.memory_max, 4ULL << 30);
  EXPECT_EQ(parseConfig("[work]\nmemory_max = \"4G\"\n", "agent.toml").work.memory_max, 4ULL << 30);
  EXPECT_EQ(parseConfig("[work]\nmemory_max = \"8388608\"\n", "agent.toml").work.memory_max, 8ULL << 20);
}

TEST(ConfigTest, HostileWorkLimitsAreRejectedWithTheirKey) {
  EXPECT_THAT(parseError("[work]\npids_max = 0\n"), HasSubstr("agent.toml:2: 'work.pids_max' must be from 8"));
  EXPECT_THAT(parseError("[work]\npids_max = -1\n"), HasSubstr("'work.pids_max' must be from 8"));
  EXPECT_THAT(parseError("[work]\npids_max = 99999999999\n"), HasSubstr("'work.pids_max' must be from 8"));
  EXPECT_THAT(parseError("[work]\npids_max = \"64\"\n"), HasSubstr("'work.pids_max' must be an integer"));
  EXPECT_THAT(parseError("[work]\ncpu_weight = 0\n"), HasSubstr("'work.cpu_weight' must be from 1 to 10000"));
  EXPECT_THAT(parseError("[work]\ncpu_weight = 10001\n"), HasSubstr("'work.cpu_weight' must be from 1 to 10000"));
  for (const char* bad : {"\"\"", "\"4g\"", "\"-4G\"", "\"4 G\"", "\"4GB\"", "\"1.5G\"", "\"1e9\"", "\"G\"",
                          "\"0x100000\"", "\"99999999999999999999\"", "\"99999999999T\"", "\"4G\\u0000\"", "true",
                          "1.5", "-1", "1024", "\"3M\"", "[1]"}) {
    const std::string error = parseError(std::string("[work]\nmemory_max = ") + bad + "\n");
    EXPECT_THAT(error, HasSubstr("agent.toml:2: 'work.memory_max' ")) << bad;
  }
  EXPECT_THAT(parseError("[work]\nmemory_max = \"4g\"\n"), HasSubstr("is not a byte count"));
  EXPECT_THAT(parseError("[work]\nmemory_max = \"99999999999T\"\n"), HasSubstr("is too large"));
  EXPECT_THAT(parseError("[work]\nmemory_max = 1024\n"), HasSubstr("must be at least 4M"));
}

TEST(ConfigTest, LogMaxBytesIsABytesCountOrASize) {
  EXPECT_EQ(parseConfig("[work]\nlog_max_bytes = \"64K\"\n", "agent.toml").work.log_max_bytes, 65536u);
  EXPECT_EQ(parseConfig("[work]\nlog_max_bytes = \"1G\"\n", "agent.toml").work.log_max_bytes, 1ULL << 30);
  EXPECT_EQ(parseConfig("[work]\nlog_max_bytes = 1024\n", "agent.toml").work.log_max_bytes, 1024u);
  EXPECT_EQ(parseConfig("[work]\nlog_max_bytes = \"1T\"\n", "agent.toml").work.log_max_bytes, 1ULL << 40);
}

// [storage] takes the sizes [work] log_max_bytes takes; integers still work.
TEST(ConfigTest, StorageSizesAreByteCountsOrSizes) {
  const AgentConfig sized = parseConfig("[storage]\nmin_free_bytes = \"512M\"\nreserve_bytes = \"8M\"\n", "agent.toml");
  EXPECT_EQ(sized.storage.min_free_bytes, 512ULL << 20);
  EXPECT_EQ(sized.storage.reserve_bytes, 8ULL << 20);
  const AgentConfig big = parseConfig("[storage]\nmin_free_bytes = \"2G\"\nreserve_bytes = \"1T\"\n", "agent.toml");
  EXPECT_EQ(big.storage.min_free_bytes, 2ULL << 30);
  EXPECT_EQ(big.storage.reserve_bytes, 1ULL << 40);
  const AgentConfig plain = parseConfig("[storage]\nmin_free_bytes = 0\nreserve_bytes = \"4096\"\n", "agent.toml");
  EXPECT_EQ(plain.storage.min_free_bytes, 0u);
  EXPECT_EQ(plain.storage.reserve_bytes, 4096u);
  EXPECT_EQ(parseConfig("[storage]\nreserve_bytes = \"64K\"\n", "agent.toml").storage.reserve_bytes, 65536u);
  EXPECT_EQ(parseConfig("[storage]\nmin_free_bytes = \"1024T\"\n", "agent.toml").storage.min_free_bytes, 1ULL << 50);
}

TEST(ConfigTest, HostileStorageSizesAreRejectedWithTheirKeys) {
  for (const char* key : {"min_free_bytes", "reserve_bytes"}) {
    for (const char* bad : {"-1", "\"\"", "\"64m\"", "\"64 M\"", "\"1.5M\"", "\"1025T\"", "1125899906842625",
                            "\"99999999999999999999\"", "true", "1.5", "[1]"}) {
      const std::string error = parseError(std::string("[storage]\n") + key + " = " + bad + "\n");
      EXPECT_THAT(error, HasSubstr(std::string("agent.toml:2: 'storage.") + key + "' ")) << key << " = " << bad;
    }
    EXPECT_THAT(parseError(std::string("[storage]\n") + key + " = \"64m\"\n"), HasSubstr("is not a byte count"));
    EXPECT_THAT(parseError(std::string("[storage]\n") + key + " = \"1025T\"\n"), HasSubstr("must be at most 1024T"));
  }
}

TEST(ConfigTest, HostileLogMaxBytesIsRejectedWithItsKey) {
  for (const char* bad : {"0", "1023", "-1", "\"1023\"", "\"\"", "\"64m\"", "\"64 M\"", "\"1.5M\"", "\"2T\"",
                          "1099511627777", "\"99999999999999999999\"", "true", "1.5", "[1]"}) {
    const std::string error = parseError(std::string("[work]\nlog_max_bytes = ") + bad + "\n");
    EXPECT_THAT(error, HasSubstr("agent.toml:2: 'work.log_max_bytes' ")) << bad;
  }
  EXPECT_THAT(parseError("[work]\nlog_max_bytes = 0\n"), HasSubstr("must be from 1K to 1T"));
  EXPECT_THAT(parseError("[work]\nlog_max_bytes = \"64m\"\n"), HasSubstr("is not a byte count"));
}

}  // namespace
}  // namespace phonefarm
