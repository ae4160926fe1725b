// The daemon as an operator meets it: check-config, refusing bad tokens files
// and a second instance, SIGHUP token reload, graceful SIGTERM, slow clients
// cut off at the header timeout, no lost state after SIGKILL, and 503 (with
// nothing half-written) while the database is locked.
#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdio>

#include "tests/integration/agent_fixture.hpp"
#include "tests/support/run_command.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

class DaemonLifecycle : public AgentFixture {
 protected:
  std::string extraConfig() const override { return "[http]\nheader_timeout_seconds = 1\n"; }
};

TEST_F(DaemonLifecycle, CheckConfigAcceptsGoodAndNamesTheBadKey) {
  auto ok = runCommand({PHONEFARM_AGENT_BINARY, "check-config", "--config", configPath().string()});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("OK"), std::string::npos) << ok.output;

  writeFile(dir_.path() / "bad.toml", "listen = \"127.0.0.1:0\"\n[http]\nheader_timeout = 3\n", 0600);
  auto bad = runCommand({PHONEFARM_AGENT_BINARY, "check-config", "--config", (dir_.path() / "bad.toml").string()});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("http.header_timeout"), std::string::npos) << bad.output;

  auto version = runCommand({PHONEFARM_AGENT_BINARY, "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("phonefarm-agent "), std::string::npos);
}

TEST_F(DaemonLifecycle, RefusesOpenTokensFileAndSecondInstance) {
  // A second agent on the same state dir refuses to start.
  auto second = runCommand({PHONEFARM_AGENT_BINARY, "--config", configPath().string()});
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.output.find("another phonefarm-agent is running"), std::string::npos) << second.output;

  ASSERT_EQ(agent_->stop(SIGTERM, 10s), 0);
  ::chmod((dir_.path() / "tokens").c_str(), 0644);
  auto open_tokens = runCommand({PHONEFARM_AGENT_BINARY, "--config", configPath().string()});
  EXPECT_NE(open_tokens.exit_code, 0);
  EXPECT_NE(open_tokens.output.find("chmod 600"), std::string::npos) << open_tokens.output;
  EXPECT_EQ(open_tokens.output.find(kReadToken), std::string::npos);  // never print a token
  ::chmod((dir_.path() / "tokens").c_str(), 0600);
  startAgent();
}

TEST_F(DaemonLifecycle, SighupReloadsTokens) {
  EXPECT_EQ(call("GET", "/processes", "", kReadToken).status, 200);
  writeFile(dir_.path() / "tokens", "newreader read fresh-token-0123456789abcdef\n", 0600);
  agent_->kill(SIGHUP);
  ASSERT_TRUE(agent_->waitForLine("auth.tokens_reloaded", 10s));
  EXPECT_EQ(call("GET", "/processes", "", "fresh-token-0123456789abcdef").status, 200);
  EXPECT_EQ(call("GET", "/processes", "", kReadToken).status, 401);
  // A broken file keeps the tokens in force.
  writeFile(dir_.path() / "tokens", "broken line\n", 0600);
  agent_->kill(SIGHUP);
  ASSERT_TRUE(agent_->waitForLine("auth.tokens_reload_failed", 10s));
  EXPECT_EQ(call("GET", "/processes", "", "fresh-token-0123456789abcdef").status, 200);
  for (const auto& line : agent_->lines()) EXPECT_EQ(line.find("fresh-token"), std::string::npos) << line;
}

// A request after the first on a connection (the first one has
// http.first_request_timeout_seconds: connection_fairness_test).
TEST_F(DaemonLifecycle, SlowClientIsCutOffAtTheHeaderTimeout) {
  RawConnection slow("127.0.0.1", port_);
  slow.sendAll("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string answer;
  ASSERT_EQ(slow.recvSome(answer, 5s), RawConnection::Recv::kData);
  slow.sendAll("POST /processes HTTP/1.1\r\nHost: x\r\n");  // and never finishes the header
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(slow.waitClosed(300ms));
  EXPECT_TRUE(slow.waitClosed(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  EXPECT_EQ(call("GET", "/healthz").status, 200);  // others are served meanwhile
}

TEST_F(DaemonLifecycle, GracefulStopExitsZero) {
  submit("before-stop");
  EXPECT_EQ(agent_->stop(SIGTERM, 10s), 0);
  EXPECT_TRUE(agent_->waitForLine("agent.stopped", 1s));
  startAgent();
  EXPECT_EQ(call("GET", "/processes/before-stop", "", kReadToken).status, 200);
}

TEST_F(DaemonLifecycle, AcknowledgedStateSurvivesSigkill) {
  for (int i = 0; i < 20; ++i) submit("crash-" + std::to_string(i), 2);
  for (int i = 0; i < 20; i += 2) {
    ASSERT_EQ(call("POST", "/processes/crash-" + std::to_string(i) + "/cancel", cancelBody(), kOperateToken).status,
              200);
  }
  restartAgent(SIGKILL);
  auto all = call("GET", "/processes?limit=500", "", kReadToken).json().at("processes").as_array();
  ASSERT_EQ(all.size(), 20u);
  for (const auto& p : all) {
    const std::string id(p.at("process_id").as_string());
    const int n = std::stoi(id.substr(6));
    EXPECT_EQ(p.at("status"), n % 2 == 0 ? "cancelled" : "queued") << id;
  }
}

TEST_F(DaemonLifecycle, LockedDatabaseGives503AndNothingHalfWritten) {
  submit("locked");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_.path() / "state" / "agent.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto r = call("POST", "/processes/locked/cancel", cancelBody(), kOperateToken);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_TRUE(r.json().at("detail").is_string());
  EXPECT_EQ(r.body.find("SQL"), std::string::npos);
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto p = call("GET", "/processes/locked", "", kReadToken).json();
  EXPECT_EQ(p.at("status"), "queued");
  EXPECT_EQ(p.at("cancel_audit"), json::array{});
  EXPECT_EQ(call("POST", "/processes/locked/cancel", cancelBody(), kOperateToken).status, 200);
}

}  // namespace
}  // namespace phonefarm::testing

namespace phonefarm::testing {
namespace {

TEST_F(DaemonLifecycle, UnexpectedErrorIs500WithAnErrorIdInTheLog) {
  submit("corrupt");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_.path() / "state" / "agent.db").c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE processes SET requested_by = 'not json' WHERE process_id = 'corrupt'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto r = call("GET", "/processes/corrupt", "", kReadToken);
  ASSERT_EQ(r.status, 500) << r.body;
  const auto body = r.json();
  EXPECT_EQ(body.at("detail"), "Internal error");
  const std::string error_id(body.at("error_id").as_string());
  EXPECT_EQ(r.body.find("json"), std::string::npos);  // no internals in the response
  EXPECT_TRUE(agent_->waitForLine("error_id=" + error_id, std::chrono::seconds(5)));
  EXPECT_EQ(call("GET", "/healthz").status, 200);
}

}  // namespace
}  // namespace phonefarm::testing
