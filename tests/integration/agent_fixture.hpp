// AgentFixture: starts the real phonefarm-agent binary on 127.0.0.1 port 0
// with a temporary state dir, config and tokens file (one token per scope),
// and gives the test an HTTP client to it. Used by every integration test.
#pragma once

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "tests/support/agent_process.hpp"
#include "tests/support/http_client.hpp"

namespace phonefarm::testing {

inline constexpr const char* kReadToken = "read-token-0123456789abcdef";
inline constexpr const char* kOperateToken = "operate-token-0123456789abcdef";
inline constexpr const char* kScheduleToken = "schedule-token-0123456789abcdef";

class AgentFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(jobsDir());
    writeFile(jobsDir() / "post.sh", "#!/bin/sh\nexit 0\n", 0755);
    writeConfig();
    writeFile(dir_.path() / "tokens",
              std::string("# test tokens\nreader read ") + kReadToken + "\noperator operate " + kOperateToken +
                  "\nscheduler schedule " + kScheduleToken + "\n",
              0600);
    startAgent();
  }

  void TearDown() override {
    client_.reset();
    if (agent_ && agent_->running()) {
      EXPECT_EQ(agent_->stop(SIGTERM, std::chrono::seconds(10)), 0);
    }
  }

  // Extra TOML appended to the config (e.g. an [http] table).
  virtual std::string extraConfig() const { return ""; }

  // The [work] table. By default run_as names no user, so the executor runs
  // nothing and every submitted item stays pending: the API tests of queued
  // work are deterministic. Tests of execution override it (WorkFixture).
  virtual std::string workConfig() const {
    return "[work]\nrun_as = \"phonefarm-test-no-such-user\"\nallowed_command_prefixes = [\"" + jobsDir().string() +
           "/\", \"/usr/bin/\"]\n";
  }

  // The [adb] table. By default no adb server is reachable and none can be
  // started (phones stay `absent`); the phone tests run a private one.
  virtual std::string adbConfig() const { return "[adb]\nserver = \"127.0.0.1:1\"\nadb_path = \"/bin/false\"\n"; }

  virtual std::string phonesConfig() const {
    return "[[phones]]\nid = \"phone_01\"\nserial = \"127.0.0.1:5555\"\n"
           "[[phones]]\nid = \"phone_02\"\nserial = \"R58M123ABC\"\nusb_port = \"1-1.4\"\n";
  }

  // Extra environment for the agent process (e.g. NOTIFY_SOCKET).
  virtual AgentProcess::Env agentEnv() const { return {}; }

  std::filesystem::path jobsDir() const { return dir_.path() / "jobs"; }
  // An allowed command: <jobs>/name, made executable.
  std::string writeJob(const std::string& name, const std::string& script) const {
    writeFile(jobsDir() / name, script, 0755);
    return (jobsDir() / name).string();
  }

  void writeConfig() {
    writeFile(configPath(),
              "listen = \"127.0.0.1:0\"\n"
              "state_dir = \"" +
                  stateDirSetting() +
                  "\"\n"
                  "tokens_file = \"" +
                  (dir_.path() / "tokens").string() + "\"\n" + extraConfig() + workConfig() + adbConfig() +
                  phonesConfig(),
              0600);
  }

  std::filesystem::path configPath() const { return dir_.path() / "agent.toml"; }
  // The config's state_dir (the directory is always dir_/state).
  virtual std::string stateDirSetting() const { return (dir_.path() / "state").string(); }

  void startAgent() {
    // In dir_, not the test's working directory: that is in the build tree,
    // which work running as another user may not be able to enter.
    agent_ = std::make_unique<AgentProcess>(PHONEFARM_AGENT_BINARY,
                                            std::vector<std::string>{"--config", configPath().string()}, dir_.path(),
                                            agentEnv(), dir_.path());
    port_ = agent_->waitForListening(std::chrono::seconds(20));
    ASSERT_NE(port_, 0);
    client_ = std::make_unique<HttpClient>("127.0.0.1", port_);
  }

  void restartAgent(int signal) {
    client_.reset();
    agent_->stop(signal, std::chrono::seconds(10));
    startAgent();
  }

  HttpClient::Response call(const std::string& method, const std::string& target, const std::string& body = "",
                            const char* token = kScheduleToken) {
    HttpClient::Headers headers;
    if (token != nullptr) headers.emplace_back("Authorization", std::string("Bearer ") + token);
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return client_->request(method, target, body, headers);
  }

  // Submits a process on phone_01 with `items` pending items; returns its JSON.
  boost::json::object submit(const std::string& process_id, int items = 1, const std::string& phone = "phone_01") {
    boost::json::array qi;
    for (int i = 0; i < items; ++i) {
      qi.push_back(boost::json::object{{"queue_item_id", process_id + "-q" + std::to_string(i)},
                                       {"command", boost::json::array{(jobsDir() / "post.sh").string(), "--n", i}}});
      qi.back().as_object()["command"].as_array()[2] = std::to_string(i);
    }
    boost::json::object body{{"process_id", process_id},
                             {"phone_id", phone},
                             {"account_id", "account_1"},
                             {"requested_by", boost::json::object{{"system", "scheduler"}}},
                             {"queue_items", std::move(qi)}};
    auto r = call("POST", "/processes", boost::json::serialize(body));
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json().as_object();
  }

  static std::string cancelBody(const std::string& strategy = "soft_then_force", int force_after = 10) {
    return R"({"reason":"test","strategy":")" + strategy + R"(","force_after_seconds":)" + std::to_string(force_after) +
           R"(,"requested_by":{"system":"test"}})";
  }

  // The work user (nobody) must reach its execution dir under state/ and the jobs.
  TempDir dir_{DirAccess::kTraversableByOthers};
  std::unique_ptr<AgentProcess> agent_;
  std::unique_ptr<HttpClient> client_;
  std::uint16_t port_ = 0;
};

}  // namespace phonefarm::testing
