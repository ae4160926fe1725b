// What else may hold the adb server's port, against the real agent: an adb
// server of another version (tests/fakes/fake-adb-server --version, speaking
// the host protocol) and a program that is not adb at all (--hog). One
// fake-adbd network phone is configured; when the fault goes away the agent
// starts the real adb server (/usr/bin/adb) itself and the phone must come
// back to `ready` through it, with no API call.
//
// A foreign-version server is reported (GET /readyz `adb`, metrics, the
// journal) and left running by default; adb.replace_foreign_server = true
// replaces it. A port hog makes /readyz 503 with the reason, and the agent's
// connection attempts (counted by the hog) back off.
#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "agent/phone/adb_client.hpp"
#include "tests/integration/work_fixture.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/run_command.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kForeignVersion = "0020";  // adb 1.0.32

// /usr/bin/adb's host:version, from `adb version` ("1.0.41" -> "0029").
std::string installedAdbVersion() {
  const auto r = runCommand({"/usr/bin/adb", "version"});
  const std::string prefix = "Android Debug Bridge version 1.0.";
  const auto at = r.output.find(prefix);
  if (at == std::string::npos) return "";
  char hex[8];
  std::snprintf(hex, sizeof hex, "%04x", std::stoi(r.output.substr(at + prefix.size())));
  return hex;
}

class AdbServerFaults : public WorkFixture {
 protected:
  // fake-adb-server's arguments for what holds the port when the agent starts.
  virtual std::vector<std::string> portHolder() const = 0;
  virtual bool replaceForeign() const { return false; }

  void SetUp() override {
    ASSERT_EQ(::access("/usr/bin/adb", X_OK), 0) << "/usr/bin/adb is not installed";
    expected_version_ = installedAdbVersion();
    ASSERT_EQ(expected_version_.size(), 4u);
    adb_port_ = freePort();
    adb_home_ = dir_.path() / "adb-home";
    std::filesystem::create_directories(adb_home_);
    phone_ = std::make_unique<AgentProcess>(
        PHONEFARM_FAKE_ADBD,
        std::vector<std::string>{"--port", "0", "--shell", "echo phonefarm-probe=phonefarm-probe\n"}, dir_.path());
    ASSERT_TRUE(phone_->waitForLine("fake-adbd listening port=", seconds(10))) << phone_->output();
    const auto line = *phone_->findLine("fake-adbd listening port=");
    phone_port_ = static_cast<std::uint16_t>(std::stoi(line.substr(line.find("port=") + 5)));
    auto args = portHolder();
    args.insert(args.begin(), {"--port", std::to_string(adb_port_)});
    holder_ = std::make_unique<AgentProcess>(PHONEFARM_FAKE_ADB_SERVER, args, dir_.path());
    ASSERT_TRUE(holder_->waitForLine("fake-adb-server listening", seconds(10))) << holder_->output();
    WorkFixture::SetUp();
  }

  void TearDown() override {
    WorkFixture::TearDown();
    holder_.reset();
    phone_.reset();
    // The real server the agent started, if it did.
    runCommand(
        {"/usr/bin/env", "HOME=" + adb_home_.string(), "/usr/bin/adb", "-P", std::to_string(adb_port_), "kill-server"});
  }

  std::string phonesConfig() const override {
    return "[[phones]]\nid = \"phone_01\"\nserial = \"127.0.0.1:" + std::to_string(phone_port_) + "\"\n";
  }
  std::string adbConfig() const override {
    return "[adb]\nserver = \"127.0.0.1:" + std::to_string(adb_port_) + "\"\nadb_path = \"/usr/bin/adb\"\n" +
           (replaceForeign() ? "replace_foreign_server = true\n" : "");
  }
  std::string resetConfig() const override {
    return "[reset]\nadb_reconnect_timeout_seconds = 10\nusb_reset = false\n[heal]\nafter_seconds = 5\n";
  }
  bool waitForDevice() const override { return true; }

  struct Readyz {
    int status = 0;
    json::object body;
  };
  Readyz readyz() {
    auto r = call("GET", "/readyz", "", kReadToken);
    if (r.status != 200 && r.status != 503) {
      ADD_FAILURE() << r.status << " " << r.body;
      return {};
    }
    return {r.status, r.json().as_object()};
  }
  Readyz waitForReadyz(const std::function<bool(const Readyz&)>& pred, milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Readyz r;
    while (std::chrono::steady_clock::now() < deadline) {
      r = readyz();
      if (r.status != 0 && pred(r)) return r;
      std::this_thread::sleep_for(milliseconds(50));
    }
    ADD_FAILURE() << "timed out waiting on /readyz: " << r.status << " " << json::serialize(r.body);
    return r;
  }
  static std::string faultOf(const Readyz& r) {
    const auto* adb = r.body.if_contains("adb");
    const auto* fault = adb != nullptr && adb->is_object() ? adb->as_object().if_contains("fault") : nullptr;
    return fault != nullptr && fault->is_object() ? std::string(fault->at("reason").as_string()) : "";
  }

  // phone_01 ready through an adb server of the agent's version.
  void waitForPhoneReady(milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json::object p;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = call("GET", "/phones/phone_01", "", kReadToken);
      ASSERT_EQ(r.status, 200) << r.body;
      p = r.json().as_object();
      if (p.at("health") == "ready" && p.at("adb_state") == "device" && p.at("attention").is_null()) return;
      std::this_thread::sleep_for(milliseconds(50));
    }
    FAIL() << "phone_01 not ready: " << json::serialize(p);
  }

  std::string metrics() { return call("GET", "/metrics", "", kReadToken).body; }

  // Lines of the port holder that contain `what`.
  std::vector<std::string> holderLines(std::string_view what) const {
    std::vector<std::string> out;
    for (const auto& l : holder_->lines()) {
      if (l.find(what) != std::string::npos) out.push_back(l);
    }
    return out;
  }
  // Waits until the port holder printed `n` lines containing `what`.
  bool waitForHolderLines(std::string_view what, std::size_t n, milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (holderLines(what).size() >= n) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }

  std::uint16_t adb_port_ = 0;
  std::uint16_t phone_port_ = 0;
  std::filesystem::path adb_home_;
  std::string expected_version_;
  std::unique_ptr<AgentProcess> phone_;
  std::unique_ptr<AgentProcess> holder_;
};

class ForeignAdbServer : public AdbServerFaults {
 protected:
  std::vector<std::string> portHolder() const override { return {"--version", kForeignVersion}; }
};

TEST_F(ForeignAdbServer, IsReportedWithBothVersionsAndLeftRunningUntilItGoes) {
  auto r = waitForReadyz([](const Readyz& q) { return faultOf(q) == "foreign_version"; }, seconds(20));
  // The phones could still be served by it: not a reason to refuse work.
  EXPECT_EQ(r.status, 200) << json::serialize(r.body);
  const auto& adb = r.body.at("adb").as_object();
  EXPECT_EQ(adb.at("server_version"), kForeignVersion);
  EXPECT_EQ(adb.at("expected_version"), json::value(expected_version_));
  const std::string detail(adb.at("fault").at("detail").as_string());
  EXPECT_NE(detail.find("is version 0020, the agent's adb (/usr/bin/adb) is " + expected_version_), std::string::npos)
      << detail;
  EXPECT_NE(detail.find("left running (adb.replace_foreign_server = false)"), std::string::npos) << detail;

  const auto m = metrics();
  EXPECT_NE(m.find("phonefarm_adb_server_fault{reason=\"foreign_version\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("phonefarm_adb_server_fault{reason=\"port_hog\"} 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("phonefarm_adb_server_version_info{server_version=\"0020\",expected_version=\"" + expected_version_ +
                   "\"} 1\n"),
            std::string::npos)
      << m;
  EXPECT_TRUE(agent_->waitForLine("adb.server.foreign_version endpoint=127.0.0.1:" + std::to_string(adb_port_) +
                                      " server_version=0020 expected_version=" + expected_version_ +
                                      " action=left_running",
                                  seconds(5)))
      << agent_->output();

  // A while later (three more rounds of the agent's device list, 2 s apart)
  // it is still there and answering: the agent never killed it, nor ran an
  // adb client against it (which would have).
  const auto seen = holderLines("service=host:devices-l").size();
  ASSERT_TRUE(waitForHolderLines("service=host:devices-l", seen + 3, seconds(30))) << holder_->output();
  EXPECT_TRUE(holder_->running());
  EXPECT_TRUE(holderLines("host:kill").empty()) << holder_->output();
  auto version = phone::AdbClient(phone::AdbEndpoint{"127.0.0.1", adb_port_}).version(seconds(2));
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_EQ(*version, kForeignVersion);
  EXPECT_EQ(faultOf(readyz()), "foreign_version");

  // Its owner stops it: the agent starts its own server and the phone is back.
  holder_->stop(SIGTERM);
  waitForPhoneReady(seconds(60));
  r = waitForReadyz([](const Readyz& q) { return faultOf(q).empty(); }, seconds(20));
  EXPECT_EQ(r.body.at("adb").at("server_version"), json::value(expected_version_));
  EXPECT_TRUE(agent_->waitForLine("adb.server.fault_cleared", seconds(5))) << agent_->output();
  EXPECT_NE(metrics().find("phonefarm_adb_server_fault{reason=\"foreign_version\"} 0\n"), std::string::npos);
}

class ForeignAdbServerReplaced : public ForeignAdbServer {
 protected:
  bool replaceForeign() const override { return true; }
};

TEST_F(ForeignAdbServerReplaced, IsStoppedAndThePhonesComeBackThroughTheAgentsServer) {
  ASSERT_TRUE(holder_->waitForLine("fake-adb-server killed", seconds(20))) << holder_->output();
  EXPECT_EQ(holder_->waitExit(seconds(10)), 0);
  waitForPhoneReady(seconds(60));
  auto r = waitForReadyz([](const Readyz& q) { return faultOf(q).empty(); }, seconds(20));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.at("adb").at("server_version"), json::value(expected_version_));
  EXPECT_TRUE(agent_->waitForLine("adb.server.replaced endpoint=127.0.0.1:" + std::to_string(adb_port_) +
                                      " old_version=0020 new_version=" + expected_version_,
                                  seconds(5)))
      << agent_->output();
  const auto m = metrics();
  EXPECT_NE(m.find("phonefarm_adb_server_replacements_total 1\n"), std::string::npos) << m;
  auto version = phone::AdbClient(phone::AdbEndpoint{"127.0.0.1", adb_port_}).version(seconds(2));
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_EQ(*version, expected_version_);
}

class AdbPortHog : public AdbServerFaults {
 protected:
  std::vector<std::string> portHolder() const override { return {"--hog", "garbage"}; }
};

TEST_F(AdbPortHog, IsNotReadyWithTheReasonBacksOffAndRecoversWhenItGoes) {
  auto r = waitForReadyz([](const Readyz& q) { return faultOf(q) == "port_hog"; }, seconds(20));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body.at("status"), "not_ready");
  const std::string detail(r.body.at("detail").as_string());
  EXPECT_NE(detail.find("something that is not an adb server holds 127.0.0.1:" + std::to_string(adb_port_)),
            std::string::npos)
      << detail;
  EXPECT_EQ(r.body.at("adb").at("fault").at("detail"), json::value(detail));
  const auto m = metrics();
  EXPECT_NE(m.find("phonefarm_adb_server_fault{reason=\"port_hog\"} 1\n"), std::string::npos) << m;
  EXPECT_TRUE(agent_->waitForLine("adb.server.port_hog endpoint=127.0.0.1:" + std::to_string(adb_port_), seconds(5)))
      << agent_->output();

  // The agent's connections, as the hog counts them: the back-off doubles
  // from 100 ms to 5 s, so the 8th comes more than 11 s after the 1st (a
  // fixed-rate poll next to it would bring it much closer), and no adb client
  // was run against the port (it would connect too, and start a server).
  ASSERT_TRUE(waitForHolderLines("accepted n=", 8, seconds(40))) << holder_->output();
  std::vector<long> at;
  for (const auto& l : holderLines("accepted n=")) at.push_back(std::stol(l.substr(l.find("ms=") + 3)));
  std::printf("adb-server-faults port_hog connections_ms=");
  for (std::size_t i = 0; i < 8; ++i) std::printf("%s%ld", i == 0 ? "" : ",", at[i]);
  std::printf("\n");
  EXPECT_GE(at[7] - at[0], 8000) << holder_->output();
  EXPECT_GE(at[7] - at[6], 2500) << holder_->output();
  EXPECT_EQ(agent_->findLine("adb.server.start"), std::nullopt) << agent_->output();

  // The hog goes: the agent starts the server itself and the phone is back.
  holder_->stop(SIGTERM);
  waitForPhoneReady(seconds(60));
  r = waitForReadyz([](const Readyz& q) { return q.status == 200; }, seconds(20));
  EXPECT_TRUE(r.body.at("adb").at("fault").is_null()) << json::serialize(r.body);
  EXPECT_NE(metrics().find("phonefarm_adb_server_fault{reason=\"port_hog\"} 0\n"), std::string::npos);
}

}  // namespace
}  // namespace phonefarm::testing
