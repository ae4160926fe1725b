// The rack against real parts: a private real adb server (`adb -P`) with
// fake-adbd connected as a network phone, the agent tracking it; GET /phones,
// work held on an absent phone, the reset ladder after a hard cancel and on a
// technician's request, a phone that is unplugged, an adb server that dies.
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/work_fixture.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/run_command.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct FakeStats {
  unsigned long connections = 0;
  unsigned long handshakes = 0;
};

class Phones : public WorkFixture {
 protected:
  void SetUp() override {
    adb_port_ = freePort();
    adb_home_ = dir_.path() / "adb-home";
    std::filesystem::create_directories(adb_home_);
    startFakePhone();
    ASSERT_EQ(adb("start-server").first, 0);
    auto connected = adb("connect 127.0.0.1:" + std::to_string(fake_port_));
    ASSERT_NE(connected.second.find("connected"), std::string::npos) << connected.second;
    WorkFixture::SetUp();
  }

  void TearDown() override {
    WorkFixture::TearDown();
    fake_.reset();
    adb("kill-server");
  }

  void startFakePhone() {
    fake_ = std::make_unique<AgentProcess>(
        PHONEFARM_FAKE_ADBD,
        std::vector<std::string>{"--port", fake_port_ == 0 ? "0" : std::to_string(fake_port_), "--stats",
                                 (dir_.path() / "fake.stats").string(), "--shell", "echo ok=ok"},
        dir_.path());
    ASSERT_TRUE(fake_->waitForLine("fake-adbd listening port=", seconds(10))) << fake_->output();
    const auto line = *fake_->findLine("fake-adbd listening port=");
    fake_port_ = static_cast<std::uint16_t>(std::stoi(line.substr(line.find("port=") + 5)));
  }

  // Runs `adb -P <private port> ARGS` (split at spaces) with HOME in the test dir.
  std::pair<int, std::string> adb(const std::string& args) const {
    std::vector<std::string> argv{"/usr/bin/env", "HOME=" + adb_home_.string(), "/usr/bin/adb", "-P",
                                  std::to_string(adb_port_)};
    std::istringstream words(args);
    for (std::string word; words >> word;) argv.push_back(word);
    const auto r = runCommand(argv);
    return {r.exit_code, r.output};
  }

  std::string serial() const { return "127.0.0.1:" + std::to_string(fake_port_); }

  std::string phonesConfig() const override {
    return "[[phones]]\nid = \"phone_01\"\nserial = \"" + serial() +
           "\"\n[[phones]]\nid = \"phone_02\"\nserial = \"R58M-NOT-PLUGGED\"\n";
  }
  std::string adbConfig() const override {
    return "[adb]\nserver = \"127.0.0.1:" + std::to_string(adb_port_) + "\"\nadb_path = \"/usr/bin/adb\"\n";
  }
  std::string resetConfig() const override {
    return "[reset]\nadb_reconnect_timeout_seconds = 15\nusb_reset_timeout_seconds = 2\n";
  }
  bool waitForDevice() const override { return true; }

  FakeStats fakeStats() const {
    std::ifstream in(dir_.path() / "fake.stats");
    std::string c;
    std::string h;
    FakeStats s;
    if (in >> c >> h && c.rfind("connections=", 0) == 0 && h.rfind("handshakes=", 0) == 0) {
      s.connections = std::stoul(c.substr(12));
      s.handshakes = std::stoul(h.substr(11));
    }
    return s;
  }

  json::object getPhone(const std::string& id) {
    auto r = call("GET", "/phones/" + id, "", kReadToken);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? r.json().as_object() : json::object{};
  }

  json::object waitForPhone(const std::string& id, const std::function<bool(const json::object&)>& pred,
                            milliseconds timeout = seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json::object p;
    while (std::chrono::steady_clock::now() < deadline) {
      p = getPhone(id);
      if (!p.empty() && pred(p)) return p;
      std::this_thread::sleep_for(milliseconds(20));
    }
    ADD_FAILURE() << "timed out waiting on phone " << id << ": " << json::serialize(p) << "\nagent output:\n"
                  << agent_->output();
    return p;
  }

  json::object waitForReset(const std::string& id) {
    return waitForPhone(
        id,
        [](const json::object& p) {
          return p.at("last_reset").is_object() && p.at("last_reset").at("status") != "pending" &&
                 p.at("last_reset").at("status") != "running";
        },
        seconds(40));
  }

  std::uint16_t adb_port_ = 0;
  std::uint16_t fake_port_ = 0;
  std::filesystem::path adb_home_;
  std::unique_ptr<AgentProcess> fake_;
};

TEST_F(Phones, InventoryTracksTheRackAndAnAbsentPhoneHoldsItsWork) {
  auto p1 = waitForPhone("phone_01", [](const json::object& p) { return p.at("adb_state") == "device"; });
  EXPECT_EQ(p1.at("serial"), serial().c_str());
  EXPECT_EQ(p1.at("health"), "ready");
  EXPECT_TRUE(p1.at("current").is_null());
  EXPECT_TRUE(p1.at("last_reset").is_null());
  EXPECT_TRUE(p1.at("attention").is_null());
  EXPECT_EQ(p1.at("drops"), json::parse(R"({"count":0,"window_seconds":600,"last_at":null})"));
  auto p2 = getPhone("phone_02");
  EXPECT_EQ(p2.at("adb_state"), "absent");

  submitWork("held", {{"/usr/bin/true"}}, "phone_02");
  submitWork("runs", {{"/usr/bin/true"}}, "phone_01");
  waitForStatus("runs", "succeeded");
  EXPECT_EQ(getProcess("held").at("status"), "queued");             // waits, not failed
  EXPECT_EQ(getProcess("held").at("waiting_for"), "phone_absent");  // the scheduler can move it
  EXPECT_TRUE(getProcess("runs").at("waiting_for").is_null());
  EXPECT_EQ(getPhone("phone_02").at("queue_depth"), 1);

  auto list = call("GET", "/phones", "", kReadToken).json();
  ASSERT_EQ(list.at("phones").as_array().size(), 2u);
  EXPECT_FALSE(list.as_object().contains("unassigned"));
  EXPECT_EQ(call("GET", "/phones/nope", "", kReadToken).status, 404);
  EXPECT_EQ(call("GET", "/phones", "", nullptr).status, 401);
}

TEST_F(Phones, UnassignedDevicesAreListedWithAll) {
  // A second fake phone that no [[phones]] entry names.
  AgentProcess other(PHONEFARM_FAKE_ADBD, {"--port", "0"}, dir_.path());
  ASSERT_TRUE(other.waitForLine("fake-adbd listening port=", seconds(10)));
  const auto line = *other.findLine("fake-adbd listening port=");
  const std::string other_serial = "127.0.0.1:" + line.substr(line.find("port=") + 5);
  ASSERT_NE(adb("connect " + other_serial).second.find("connected"), std::string::npos);
  const auto deadline = std::chrono::steady_clock::now() + seconds(20);
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    auto body = call("GET", "/phones?all=1", "", kReadToken).json();
    for (const auto& d : body.at("unassigned").as_array()) seen = seen || d.at("serial") == other_serial.c_str();
    if (!seen) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(seen);

  // The technician's view of the same: phonefarmctl phones --all.
  const auto ctl = runCommand({"/usr/bin/env", std::string("PHONEFARM_TOKEN=") + kReadToken, PHONEFARMCTL_BINARY,
                               "--url", "http://127.0.0.1:" + std::to_string(port_), "phones", "--all"});
  EXPECT_EQ(ctl.exit_code, 0) << ctl.output;
  EXPECT_NE(ctl.output.find("unassigned devices"), std::string::npos) << ctl.output;
  EXPECT_NE(ctl.output.find(other_serial), std::string::npos) << ctl.output;
}

TEST_F(Phones, UnpluggedPhoneIsNoticed) {
  waitForPhone("phone_01", [](const json::object& p) { return p.at("adb_state") == "device"; });
  fake_->stop(SIGTERM);
  auto p = waitForPhone("phone_01", [](const json::object& phone) { return phone.at("adb_state") != "device"; });
  EXPECT_TRUE(p.at("adb_state") == "offline" || p.at("adb_state") == "absent") << json::serialize(p);
}

TEST_F(Phones, HardCancelResetsThePhoneAndItComesBackReady) {
  waitForPhone("phone_01", [](const json::object& p) { return p.at("adb_state") == "device"; });
  const auto before = fakeStats();
  const std::string job = writeJob("hang.sh", "#!/bin/sh\necho $$ > \"$1\"\nexec sleep 3600\n");
  submitWork("forced", {{job, (outDir() / "forced.pid").string()}});
  waitForFile(outDir() / "forced.pid");
  EXPECT_EQ(getPhone("phone_01").at("health"), "busy");
  EXPECT_EQ(getPhone("phone_01").at("current").at("process_id"), "forced");

  auto r = call("POST", "/processes/forced/cancel", cancelBody("hard"), kOperateToken);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto reset = r.json().at("termination").at("phone_reset");
  ASSERT_TRUE(reset.is_object()) << r.body;
  EXPECT_EQ(reset.at("status"), "pending");

  auto p = waitForReset("phone_01");
  const auto& last = p.at("last_reset").as_object();
  EXPECT_EQ(last.at("reset_id"), reset.at("reset_id"));
  EXPECT_EQ(last.at("trigger"), "forced_cancel");
  EXPECT_EQ(last.at("status"), "succeeded") << json::serialize(last);
  EXPECT_EQ(last.at("steps").at(0).at("step"), "adb_reconnect");
  EXPECT_EQ(last.at("steps").at(0).at("status"), "succeeded");
  EXPECT_EQ(p.at("health"), "ready");
  EXPECT_EQ(p.at("adb_state"), "device");
  EXPECT_GT(fakeStats().handshakes, before.handshakes);  // the phone saw a new session
  const auto took = parseTimeMs(last.at("ended_at")) - parseTimeMs(last.at("requested_at"));
  std::cout << "reset ladder (adb_reconnect on a network phone) took " << took << " ms\n";
  const auto metrics = call("GET", "/metrics", "", kReadToken);
  EXPECT_NE(metrics.body.find(R"(phonefarm_reset_step_seconds_count{step="adb_reconnect",outcome="succeeded"} 1)"),
            std::string::npos)
      << metrics.body;
  // The same story in GET /events: the phone came up, its ladder started,
  // stepped and ended.
  const auto events = call("GET", "/events?after=0&limit=1000&phone_id=phone_01", "", kReadToken).json();
  std::vector<json::object> state;
  std::vector<json::object> ladder;
  for (const auto& e : events.at("events").as_array()) {
    if (e.at("kind") == "phone.state") state.push_back(e.as_object());
    if (const auto* id = e.as_object().if_contains("reset_id"); id != nullptr && *id == reset.at("reset_id")) {
      ladder.push_back(e.as_object());
    }
  }
  ASSERT_FALSE(state.empty()) << json::serialize(events);
  EXPECT_EQ(state.front().at("payload").at("adb_state"), "device");
  EXPECT_TRUE(state.front().at("payload").at("previous").is_null());
  ASSERT_GE(ladder.size(), 3u) << json::serialize(events);
  EXPECT_EQ(ladder.front().at("kind"), "reset.started");
  EXPECT_EQ(ladder.front().at("payload").at("trigger"), "forced_cancel");
  EXPECT_EQ(ladder.at(1).at("kind"), "reset.step");
  EXPECT_EQ(ladder.at(1).at("payload").at("step"), "adb_reconnect");
  EXPECT_EQ(ladder.at(1).at("payload").at("status"), "succeeded");
  EXPECT_EQ(ladder.back().at("kind"), "reset.ended");
  EXPECT_EQ(ladder.back().at("payload").at("status"), "succeeded");

  // The phone takes work again.
  submitWork("after", {{"/usr/bin/true"}});
  waitForStatus("after", "succeeded");
}

TEST_F(Phones, TechnicianResetThroughTheApi) {
  waitForPhone("phone_01", [](const json::object& p) { return p.at("adb_state") == "device"; });
  auto r =
      call("POST", "/phones/phone_01/reset", R"({"reason":"flaky usb","requested_by":{"user":"tech"}})", kOperateToken);
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.json().at("trigger"), "technician");
  EXPECT_EQ(r.json().at("reason"), "flaky usb");
  auto p = waitForReset("phone_01");
  EXPECT_EQ(p.at("last_reset").at("status"), "succeeded");
  EXPECT_EQ(p.at("last_reset").at("requested_by"), json::parse(R"({"user":"tech"})"));

  EXPECT_EQ(call("POST", "/phones/nope/reset", R"({"reason":"r","requested_by":{}})", kOperateToken).status, 404);
  EXPECT_EQ(call("POST", "/phones/phone_01/reset", R"({"requested_by":{}})", kOperateToken).status, 422);
  EXPECT_EQ(call("POST", "/phones/phone_01/reset", R"({"reason":"r","requested_by":{}})", kReadToken).status, 403);
}

TEST_F(Phones, ResetOfAnAbsentPhoneEndsNeedingAttentionAndHoldsWork) {
  auto r = call("POST", "/phones/phone_02/reset", R"({"reason":"gone","requested_by":{}})", kOperateToken);
  ASSERT_EQ(r.status, 202) << r.body;
  auto p = waitForReset("phone_02");
  EXPECT_EQ(p.at("last_reset").at("status"), "failed");
  EXPECT_EQ(p.at("health"), "needs_attention");
  EXPECT_EQ(p.at("attention").at("reason"), "reset_failed");
  // Kept across a restart, as it was: reason, detail and since.
  const json::value attention = p.at("attention");
  restartAgent(SIGTERM);
  auto again = getPhone("phone_02");
  EXPECT_EQ(again.at("health"), "needs_attention");
  EXPECT_EQ(again.at("attention"), attention);
}

TEST_F(Phones, AKilledAdbServerIsRestartedAndNetworkPhonesReconnected) {
  waitForPhone("phone_01", [](const json::object& p) { return p.at("adb_state") == "device"; });
  adb("kill-server");
  ASSERT_TRUE(agent_->waitForLine("phone.adb_server_lost", seconds(10))) << agent_->output();
  // The agent starts the server again and subscribes anew.
  const auto deadline = std::chrono::steady_clock::now() + seconds(20);
  bool up = false;
  while (!up && std::chrono::steady_clock::now() < deadline) {
    up = call("GET", "/readyz", "", kReadToken).json().at("adb").at("server_up").as_bool();
    if (!up) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(up) << agent_->output();
  EXPECT_EQ(adb("version").first, 0);
  // The new server knows nothing of the network phone: the agent connects it again.
  waitForPhone("phone_01", [](const json::object& p) { return p.at("adb_state") == "device"; });
}

}  // namespace
}  // namespace phonefarm::testing
