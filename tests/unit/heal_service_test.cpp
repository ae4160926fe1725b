// Self-healing, step by step: the HealService over a real ResetService and
// store, with a fake loop and clock (no real time passes for the heal's
// timers), a fake adb host and a runner that runs the blocking calls (ladder
// steps, probes) when the test says so. The test plays the adb server by
// updating the Inventory and telling both services, as the daemon's device
// tracker does.
#include "agent/phone/heal_service.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <filesystem>
#include <future>

#include "common/store/phone_repository.hpp"
#include "tests/fakes/fake_adb_host.hpp"
#include "tests/fakes/fake_blocking_runner.hpp"
#include "tests/fakes/fake_clock.hpp"
#include "tests/fakes/fake_loop.hpp"
#include "tests/fakes/fake_usb.hpp"

namespace phonefarm::phone {
namespace {

using namespace std::chrono_literals;

constexpr auto kStoreDeadline = 10s;  // real time, for the store thread only

class HealServiceTest : public ::testing::Test {
 protected:
  HealServiceTest() : loop_(clock_) {
    dir_ = std::filesystem::temp_directory_path() / ("heal-service-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store::StoreOptions options;
    options.path = dir_ / "agent.db";
    store_ = std::make_unique<store::Store>(options);
    config_.phones = {{"phone_01", "USBSERIAL01", std::string("1-1.4")}};
    config_.reset.adb_reconnect_timeout = 1s;
    config_.reset.usb_reset = false;
    config_.heal.after = 30s;
    config_.heal.probe_interval = 300s;
    config_.heal.backoff_max = 1800s;
    inventory_ = std::make_unique<Inventory>(config_.phones);
  }
  ~HealServiceTest() override {
    heal_.reset();
    resets_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void makeServices() {
    auto ladder = std::make_unique<FakeBlockingRunner>();
    ladder_ = ladder.get();
    resets_ = std::make_unique<ResetService>(
        config_, *store_, clock_, loop_, *inventory_, adb_, usb_, [](const std::string&) {}, std::move(ladder));
    auto prober = std::make_unique<FakeBlockingRunner>();
    prober_ = prober.get();
    heal_ = std::make_unique<HealService>(
        config_, clock_, loop_, *inventory_, *resets_, adb_, [this](const std::string&) { return busy_; },
        [this](const std::string& id) { announced_.push_back(id); }, &usb_, std::move(prober));
    resets_->onResetEnded(
        [this](const std::string& id, const std::string& trigger, bool ok) { heal_->resetEnded(id, trigger, ok); });
    heal_->start();
  }

  // Runs the blocking calls and the loop's posted work until nothing is left
  // but timers; no fake time passes.
  void settle() {
    while (ladder_->runPending() + prober_->runPending() + loop_.runPosted() > 0) {
    }
  }

  // The adb server lists the phone in `state` ("" = not at all).
  void serverLists(const std::string& state) {
    if (state.empty()) {
      inventory_->update({});
    } else {
      inventory_->update({AdbDevice{"USBSERIAL01", state, {}}});
    }
    resets_->phoneStateChanged("phone_01");
    heal_->phoneStateChanged("phone_01");
    settle();
  }

  // Moves fake time, running what falls due.
  void advance(std::chrono::milliseconds by) {
    loop_.advance(by);
    settle();
  }

  std::size_t reconnects() const {
    std::size_t n = 0;
    for (const auto& c : adb_.calls()) n += c == "reconnect USBSERIAL01" ? 1 : 0;
    return n;
  }
  std::size_t probes() const {
    std::size_t n = 0;
    for (const auto& c : adb_.calls()) n += c.starts_with("shell USBSERIAL01 ") ? 1 : 0;
    return n;
  }

  std::optional<store::ResetRecord> lastRecord() {
    std::promise<std::optional<store::ResetRecord>> p;
    auto f = p.get_future();
    store_->submit<std::optional<store::ResetRecord>>(
        [](store::Db& db) { return store::PhoneRepository(db).lastReset("phone_01"); },
        [&p](Result<std::optional<store::ResetRecord>> r) { p.set_value(r ? *r : std::nullopt); });
    if (f.wait_for(kStoreDeadline) != std::future_status::ready) {
      ADD_FAILURE() << "the store did not answer";
      return std::nullopt;
    }
    return f.get();
  }

  // The phone's reset history, newest first: "trigger status" each.
  std::vector<std::string> history(const std::string& phone_id = "phone_01") {
    std::promise<std::vector<std::string>> p;
    auto f = p.get_future();
    store_->submit<std::vector<std::string>>(
        [phone_id](store::Db& db) {
          std::vector<std::string> out;
          for (const auto& r : store::PhoneRepository(db).listResets(phone_id, std::nullopt, 100).resets) {
            out.push_back(r.trigger + " " + r.status);
          }
          return out;
        },
        [&p](Result<std::vector<std::string>> r) { p.set_value(r ? *r : std::vector<std::string>{}); });
    if (f.wait_for(kStoreDeadline) != std::future_status::ready) {
      ADD_FAILURE() << "the store did not answer";
      return {};
    }
    return f.get();
  }

  PhoneSnapshot phone() const { return *inventory_->phone("phone_01"); }
  std::string attentionReason() const {
    auto a = phone().attention;
    return a ? a->reason : "";
  }
  // phone_01 drops three times in a row (flap_count 3): quarantined.
  void flapIntoQuarantine() {
    for (int i = 0; i < 3; ++i) {
      serverLists("offline");
      serverLists("device");
    }
  }

  std::filesystem::path dir_;
  AgentConfig config_;
  FakeClock clock_;
  os::FakeLoop loop_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Inventory> inventory_;
  FakeAdbHost adb_;
  FakeUsb usb_;
  FakeBlockingRunner* ladder_ = nullptr;
  FakeBlockingRunner* prober_ = nullptr;
  std::unique_ptr<ResetService> resets_;
  std::unique_ptr<HealService> heal_;
  bool busy_ = false;
  std::vector<std::string> announced_;
};

TEST_F(HealServiceTest, AnIdlePhoneOutOfDeviceIsResetAfterHealAfterSeconds) {
  makeServices();
  serverLists("device");
  serverLists("offline");
  EXPECT_EQ(phone().drops, 1);
  advance(29'999ms);
  EXPECT_EQ(reconnects(), 0u);
  EXPECT_FALSE(resets_->resetting("phone_01"));
  advance(1ms);
  EXPECT_EQ(reconnects(), 1u);
  EXPECT_TRUE(resets_->resetting("phone_01"));
  auto r = lastRecord();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->trigger, "auto");
  EXPECT_EQ(r->reason, "adb_state offline for 30 s");
  EXPECT_EQ(heal_->stats().attempts, 1u);

  serverLists("device");  // the reconnect worked
  EXPECT_FALSE(resets_->resetting("phone_01"));
  EXPECT_EQ(lastRecord()->status, "succeeded");
  EXPECT_EQ(heal_->stats().healed, 1u);
  EXPECT_EQ(phone().drops, 1);  // the ladder's own kick is not a drop
}

TEST_F(HealServiceTest, APhoneBackBeforeTheDeadlineIsLeftAlone) {
  makeServices();
  serverLists("device");
  serverLists("");  // absent
  advance(20s);
  serverLists("device");
  advance(60s);
  EXPECT_EQ(reconnects(), 0u);
  EXPECT_EQ(heal_->stats().attempts, 0u);
}

TEST_F(HealServiceTest, FailedHealsBackOffAndTheBackOffStartsOverWhenThePhoneIsBack) {
  config_.heal.backoff_max = 180s;  // 1 min, 2 min, then capped at 3 min
  makeServices();
  serverLists("device");
  serverLists("offline");
  advance(30s);
  ASSERT_EQ(reconnects(), 1u);
  advance(1s);  // not back within adb_reconnect_timeout: the ladder fails
  EXPECT_FALSE(resets_->resetting("phone_01"));
  EXPECT_EQ(lastRecord()->status, "failed");
  EXPECT_EQ(attentionReason(), kAttentionResetFailed);
  EXPECT_EQ(heal_->stats().failed, 1u);

  advance(59'999ms);
  EXPECT_EQ(reconnects(), 1u);
  advance(1ms);  // 1 min after the failure
  EXPECT_EQ(reconnects(), 2u);
  advance(1s);  // fails again
  advance(119'999ms);
  EXPECT_EQ(reconnects(), 2u);
  advance(1ms);  // 2 min
  EXPECT_EQ(reconnects(), 3u);
  advance(1s);
  advance(179'999ms);
  EXPECT_EQ(reconnects(), 3u);
  advance(1ms);  // capped: 3 min, not 4
  EXPECT_EQ(reconnects(), 4u);
  advance(1s);
  EXPECT_EQ(heal_->stats().failed, 4u);

  serverLists("device");  // back on its own: the back-off and the attention go
  EXPECT_EQ(attentionReason(), "");
  EXPECT_TRUE(inventory_->canStart("phone_01", true));
  serverLists("offline");
  advance(30s);  // the first delay again, not the fifth back-off
  EXPECT_EQ(reconnects(), 5u);
}

TEST_F(HealServiceTest, BackoffDoublesFromOneMinuteUpToTheCap) {
  makeServices();
  EXPECT_EQ(heal_->backoffAfter(1), 60s);
  EXPECT_EQ(heal_->backoffAfter(2), 120s);
  EXPECT_EQ(heal_->backoffAfter(3), 240s);
  EXPECT_EQ(heal_->backoffAfter(5), 960s);
  EXPECT_EQ(heal_->backoffAfter(6), 1800s);
  EXPECT_EQ(heal_->backoffAfter(60), 1800s);
}

TEST_F(HealServiceTest, UnauthorizedNeedsAttentionAndIsNotReset) {
  makeServices();
  serverLists("device");
  serverLists("unauthorized");
  advance(600s);
  EXPECT_EQ(reconnects(), 0u);
  EXPECT_EQ(attentionReason(), kAttentionUnauthorized);
  EXPECT_EQ(phone().attention->detail, "the phone is unauthorized: accept the USB debugging prompt on it");
  EXPECT_EQ(healthOf(phone(), false), std::string(kHealthNeedsAttention));
  auto r = lastRecord();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->trigger, "unauthorized");
  EXPECT_EQ(r->status, "recorded");

  serverLists("device");  // the prompt was accepted
  EXPECT_EQ(attentionReason(), "");
  EXPECT_EQ(announced_, std::vector<std::string>{"phone_01"});
}

TEST_F(HealServiceTest, AResetThatFailsOnAnUnauthorizedPhoneLeavesReasonUnauthorized) {
  makeServices();
  serverLists("device");
  serverLists("offline");
  advance(30s);
  ASSERT_TRUE(resets_->resetting("phone_01"));
  serverLists("unauthorized");  // the reconnect brought it back unauthorized
  advance(1s);                  // not `device`: the ladder fails
  ASSERT_FALSE(resets_->resetting("phone_01"));
  EXPECT_EQ(heal_->stats().failed, 1u);
  EXPECT_EQ(attentionReason(), kAttentionUnauthorized);
  EXPECT_EQ(phone().attention->detail, "the phone is unauthorized: accept the USB debugging prompt on it");

  // A technician's reset of the unauthorized phone that fails: the same.
  std::optional<Result<store::ResetRecord>> done;
  resets_->technicianReset(
      "phone_01", "try", boost::json::object{{"technician", "t"}},
      [this, &done](Result<store::ResetRecord> rec) { loop_.post([&done, rec = std::move(rec)] { done = rec; }); });
  settle();
  ASSERT_TRUE(resets_->resetting("phone_01"));
  advance(1s);
  ASSERT_TRUE(loop_.runUntil([&] { return done.has_value(); }));
  ASSERT_FALSE(resets_->resetting("phone_01"));
  EXPECT_EQ(attentionReason(), kAttentionUnauthorized);
  advance(600s);
  EXPECT_EQ(reconnects(), 2u);  // and it is not healed automatically
}

TEST_F(HealServiceTest, AQuarantinedPhoneThatTurnsUnauthorizedStaysQuarantined) {
  makeServices();
  serverLists("device");
  flapIntoQuarantine();
  ASSERT_EQ(attentionReason(), kAttentionFlapping);
  serverLists("unauthorized");
  EXPECT_EQ(attentionReason(), kAttentionFlapping);
  serverLists("device");  // the prompt accepted: still quarantined
  EXPECT_EQ(attentionReason(), kAttentionFlapping);
}

TEST_F(HealServiceTest, APhoneThatDropsWhileAnItemRunsIsHealedAfterTheItemEnds) {
  makeServices();
  serverLists("device");
  busy_ = true;
  serverLists("offline");
  advance(300s);
  EXPECT_EQ(reconnects(), 0u);
  busy_ = false;
  heal_->itemEnded("phone_01");
  settle();
  EXPECT_EQ(reconnects(), 1u);  // already out for longer than after_seconds
  EXPECT_EQ(lastRecord()->trigger, "auto");
}

TEST_F(HealServiceTest, AnIdleDevicePhoneIsProbedAndOneThatDoesNotAnswerIsHealed) {
  makeServices();
  serverLists("device");
  advance(299s);
  EXPECT_EQ(probes(), 0u);
  advance(1s);
  EXPECT_EQ(probes(), 1u);
  EXPECT_EQ(reconnects(), 0u);
  EXPECT_EQ(heal_->stats().probes, 1u);

  adb_.shell_result = makeError(ErrorKind::kUnavailable, "shell timed out after 3000 ms");
  advance(300s);
  EXPECT_EQ(probes(), 2u);
  EXPECT_EQ(heal_->stats().probe_failures, 1u);
  EXPECT_EQ(reconnects(), 1u);  // at once, not after_seconds later
  auto r = lastRecord();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->trigger, "auto");
  EXPECT_EQ(r->reason, "liveness probe failed: shell timed out after 3000 ms");
  EXPECT_EQ(phone().drops, 1);
  // The failed probe is in the history too, before the ladder it started.
  EXPECT_EQ(history(), (std::vector<std::string>{"auto running", "probe recorded"}));
}

TEST_F(HealServiceTest, AProbeInFlightHoldsOffItemStartsUntilItEnds) {
  makeServices();
  serverLists("device");
  ASSERT_TRUE(inventory_->canStart("phone_01", true));
  loop_.advance(300s);  // the probe round: the probe is handed to its thread, not run yet
  loop_.runPosted();
  ASSERT_EQ(prober_->pending(), 1u);
  EXPECT_TRUE(phone().probing);
  EXPECT_FALSE(inventory_->canStart("phone_01", true));
  EXPECT_FALSE(inventory_->canStart("phone_01", false));
  EXPECT_EQ(healthOf(phone(), false), std::string(kHealthReady));  // not a state anyone waits on
  announced_.clear();
  settle();  // the probe answers
  EXPECT_EQ(probes(), 1u);
  EXPECT_FALSE(phone().probing);
  EXPECT_TRUE(inventory_->canStart("phone_01", true));
  EXPECT_EQ(announced_, std::vector<std::string>{"phone_01"});  // the held-off item starts now

  // A probe that fails: no item starts before the heal's ladder took the phone.
  adb_.shell_result = makeError(ErrorKind::kUnavailable, "shell timed out after 3000 ms");
  loop_.advance(300s);
  loop_.runPosted();
  EXPECT_FALSE(inventory_->canStart("phone_01", true));
  settle();
  EXPECT_TRUE(resets_->resetting("phone_01"));
  EXPECT_FALSE(phone().probing);
  EXPECT_FALSE(inventory_->canStart("phone_01", true));
}

TEST_F(HealServiceTest, NoProbeWhileAnItemRuns) {
  makeServices();
  serverLists("device");
  busy_ = true;
  advance(900s);
  EXPECT_EQ(probes(), 0u);
  busy_ = false;
  advance(300s);
  EXPECT_EQ(probes(), 1u);
}

TEST_F(HealServiceTest, AFlappingPhoneIsQuarantinedUntilATechniciansResetSucceeds) {
  makeServices();
  serverLists("device");
  for (int i = 0; i < 3; ++i) {
    serverLists("offline");
    advance(10s);
    serverLists("device");
  }
  EXPECT_EQ(attentionReason(), kAttentionFlapping);
  EXPECT_EQ(phone().drops, 3);
  EXPECT_FALSE(inventory_->canStart("phone_01", true));
  auto r = lastRecord();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->trigger, "quarantine");
  EXPECT_EQ(heal_->stats().quarantines, 1u);

  serverLists("offline");
  advance(600s);
  EXPECT_EQ(reconnects(), 0u);  // quarantined: no auto heal
  EXPECT_EQ(attentionReason(), kAttentionFlapping);

  std::optional<Result<store::ResetRecord>> done;
  resets_->technicianReset(
      "phone_01", "replugged", boost::json::object{{"technician", "t"}},
      [this, &done](Result<store::ResetRecord> rec) { loop_.post([&done, rec = std::move(rec)] { done = rec; }); });
  settle();
  serverLists("device");
  ASSERT_TRUE(loop_.runUntil([&] { return done.has_value(); }));
  EXPECT_EQ(attentionReason(), "");
  EXPECT_EQ(phone().drops, 0);
  EXPECT_TRUE(inventory_->canStart("phone_01", true));
}

TEST_F(HealServiceTest, DropsOutsideTheFlapWindowDoNotQuarantine) {
  makeServices();
  serverLists("device");
  for (int i = 0; i < 3; ++i) {
    serverLists("offline");
    advance(10s);
    serverLists("device");
    advance(300s);  // 3 drops over 620 s: never 3 within 600 s
  }
  EXPECT_EQ(attentionReason(), "");
  EXPECT_EQ(heal_->stats().drops, 3u);
}

TEST_F(HealServiceTest, AnAutomaticResetThatWorksDoesNotLiftAQuarantine) {
  makeServices();
  serverLists("device");
  flapIntoQuarantine();
  ASSERT_EQ(attentionReason(), kAttentionFlapping);
  ASSERT_TRUE(resets_->autoReset("phone_01", "auto", "test").ok());
  settle();
  serverLists("offline");
  serverLists("device");
  EXPECT_FALSE(resets_->resetting("phone_01"));
  EXPECT_EQ(attentionReason(), kAttentionFlapping);
}

TEST_F(HealServiceTest, ADownServerIsNotThePhonesFault) {
  makeServices();
  serverLists("device");
  inventory_->serverLost();
  heal_->phoneStateChanged("phone_01");
  advance(600s);
  EXPECT_EQ(reconnects(), 0u);
  EXPECT_EQ(phone().drops, 0);
}

TEST_F(HealServiceTest, DisabledDoesNothing) {
  config_.heal.enabled = false;
  makeServices();
  serverLists("device");
  serverLists("offline");
  serverLists("unauthorized");
  advance(3600s);
  EXPECT_TRUE(adb_.calls().empty());
  EXPECT_EQ(attentionReason(), "");
}

}  // namespace
}  // namespace phonefarm::phone

namespace phonefarm::phone {
namespace {

TEST(HubOf, IsTheParentPortPath) {
  EXPECT_EQ(hubOf(PhoneConfig{"a", "s", std::string("1-1.4")}), "1-1");
  EXPECT_EQ(hubOf(PhoneConfig{"a", "s", std::string("2-1.3.7")}), "2-1.3");
  EXPECT_EQ(hubOf(PhoneConfig{"a", "s", std::string("3-4")}), "usb3");
  EXPECT_EQ(hubOf(PhoneConfig{"a", "s", std::nullopt}), std::nullopt);
}

// Two phones on hub 1-1 and one on another hub.
class HubHealTest : public HealServiceTest {
 protected:
  HubHealTest() {
    config_.phones = {{"phone_01", "USBSERIAL01", std::string("1-1.1")},
                      {"phone_02", "USBSERIAL02", std::string("1-1.2")},
                      {"phone_03", "USBSERIAL03", std::string("1-2.1")}};
    config_.reset.hub_power_cycle = true;
    inventory_ = std::make_unique<Inventory>(config_.phones);
  }

  void lists(const std::vector<std::pair<std::string, std::string>>& serial_states) {
    std::vector<AdbDevice> devices;
    for (const auto& [serial, state] : serial_states) devices.push_back(AdbDevice{serial, state, {}});
    inventory_->update(devices);
    for (const auto& p : config_.phones) {
      resets_->phoneStateChanged(p.id);
      heal_->phoneStateChanged(p.id);
    }
    settle();
  }
  void allUp() { lists({{"USBSERIAL01", "device"}, {"USBSERIAL02", "device"}, {"USBSERIAL03", "device"}}); }

  std::string reasonOf(const std::string& phone_id) const {
    auto a = inventory_->phone(phone_id)->attention;
    return a ? a->reason : "";
  }
  std::size_t calls(const std::string& prefix) const {
    std::size_t n = 0;
    for (const auto& c : adb_.calls()) n += c.starts_with(prefix) ? 1 : 0;
    return n;
  }
  std::string detailOf(const std::string& phone_id) const {
    auto a = inventory_->phone(phone_id)->attention;
    return a ? a->detail : "";
  }

  const boost::json::object& hub(const boost::json::array& hubs, const std::string& id) {
    for (const auto& h : hubs) {
      if (h.at("hub_id") == id.c_str()) return h.as_object();
    }
    static const boost::json::object none;
    ADD_FAILURE() << "no hub " << id;
    return none;
  }
};

TEST_F(HubHealTest, TwoPhonesOfAHubDroppingTogetherAreOneHubEventAndOnePowerCycle) {
  makeServices();
  allUp();
  lists({{"USBSERIAL02", "device"}, {"USBSERIAL03", "device"}});  // phone_01 goes
  advance(3s);
  lists({{"USBSERIAL03", "device"}});  // phone_02 too, within hub_window_seconds
  advance(2s);
  lists({});  // phone_03, on another hub, later: no event for hub 1-2
  EXPECT_EQ(heal_->stats().hub_events, 1u);
  EXPECT_EQ(heal_->stats().hub_power_cycles, 1u);
  EXPECT_EQ(usb_.power_cycles, 1);
  const auto hubs = heal_->hubsJson();
  ASSERT_EQ(hubs.size(), 2u);
  const auto& h = hub(hubs, "1-1");
  EXPECT_EQ(h.at("phones"), boost::json::parse(R"(["phone_01","phone_02"])"));
  EXPECT_EQ(h.at("state"), "ok");
  EXPECT_EQ(h.at("last_event").at("action"), "power_cycle");
  EXPECT_EQ(h.at("last_event").at("phones"), boost::json::parse(R"(["phone_01","phone_02"])"));
  EXPECT_TRUE(hub(hubs, "1-2").at("last_event").is_null());
  // Each phone of the event has it in its reset history; the other hub's does not.
  EXPECT_EQ(history("phone_01"), std::vector<std::string>{"hub recorded"});
  EXPECT_EQ(history("phone_02"), std::vector<std::string>{"hub recorded"});
  EXPECT_TRUE(history("phone_03").empty());
  // The power cycle worked: nobody is sent to the hub.
  EXPECT_EQ(reasonOf("phone_01"), "");
  EXPECT_EQ(reasonOf("phone_02"), "");
}

TEST_F(HubHealTest, AfterAPowerCycleThatWorksTheHubsPhonesGetNoLadderOfTheirOwn) {
  config_.heal.after = 5s;
  config_.reset.usb_reset_timeout = 20s;
  makeServices();
  allUp();
  lists({{"USBSERIAL02", "device"}, {"USBSERIAL03", "device"}});  // phone_01 goes
  advance(3s);
  lists({{"USBSERIAL03", "device"}});  // phone_02 too: the hub is power-cycled
  ASSERT_EQ(usb_.power_cycles, 1);
  ASSERT_EQ(hub(heal_->hubsJson(), "1-1").at("state"), "ok");
  advance(19s);  // past after_seconds of both, within the 20 s they are given to come back
  EXPECT_EQ(calls("reconnect "), 0u);
  EXPECT_EQ(heal_->stats().attempts, 0u);
  allUp();  // back, re-enumerated
  advance(600s);
  EXPECT_EQ(calls("reconnect "), 0u);
  EXPECT_EQ(heal_->stats().drops, 2u);  // the two before the event, none from the power cycle
}

TEST_F(HubHealTest, TheHubsPhonesAreNotProbedUntilTheyHadTheTimeToComeBack) {
  config_.heal.probe_interval = 10s;
  config_.reset.usb_reset_timeout = 20s;
  makeServices();
  allUp();
  lists({{"USBSERIAL03", "device"}});  // hub event: the power cycle works
  ASSERT_EQ(usb_.power_cycles, 1);
  allUp();  // re-enumerated at once
  advance(10s);
  EXPECT_EQ(calls("shell USBSERIAL03 "), 1u);
  EXPECT_EQ(calls("shell USBSERIAL01 "), 0u);
  EXPECT_EQ(calls("shell USBSERIAL02 "), 0u);
  advance(10s);  // the 20 s are over
  EXPECT_EQ(calls("shell USBSERIAL01 "), 1u);
  EXPECT_EQ(calls("shell USBSERIAL02 "), 1u);
  EXPECT_EQ(heal_->stats().drops, 2u);
}

TEST_F(HubHealTest, WhileTheHubIsPowerCycledItsPhonesWaitAndAreHealedAloneIfTheyDoNotComeBack) {
  config_.heal.after = 5s;
  config_.reset.usb_reset_timeout = 20s;
  makeServices();
  allUp();
  // The power cycle is slow: its thread is not run until the test says so.
  inventory_->update({{"USBSERIAL03", "device", {}}});
  for (const auto& p : config_.phones) heal_->phoneStateChanged(p.id);
  ASSERT_EQ(prober_->pending(), 1u);
  EXPECT_EQ(hub(heal_->hubsJson(), "1-1").at("state"), "power_cycling");
  for (int i = 0; i < 60; ++i) {
    loop_.advance(1s);
    while (ladder_->runPending() + loop_.runPosted() > 0) {
    }
  }
  EXPECT_EQ(calls("reconnect "), 0u);  // a minute, no ladder of their own
  EXPECT_EQ(usb_.power_cycles, 0);
  settle();  // the power cycle ends (it worked), the phones stay away
  ASSERT_EQ(usb_.power_cycles, 1);
  advance(19s);
  EXPECT_EQ(calls("reconnect "), 0u);
  advance(1s);  // they had their chance: each is healed on its own
  EXPECT_EQ(calls("reconnect USBSERIAL01"), 1u);
  EXPECT_EQ(calls("reconnect USBSERIAL02"), 1u);
  EXPECT_EQ(calls("reconnect USBSERIAL03"), 0u);
}

TEST_F(HubHealTest, AFailedPowerCycleSendsATechnicianToTheHubUntilEachPhoneIsBack) {
  makeServices();
  allUp();
  usb_.power_cycle_fails = true;
  lists({{"USBSERIAL03", "device"}});  // both phones of hub 1-1 go
  ASSERT_EQ(usb_.power_cycles, 1);
  EXPECT_EQ(hub(heal_->hubsJson(), "1-1").at("state"), "power_cycle_failed");
  for (const char* id : {"phone_01", "phone_02"}) {
    EXPECT_EQ(reasonOf(id), "hub") << id;
    EXPECT_NE(detailOf(id).find("power cycle of hub 1-1's upstream port failed (LIBUSB_ERROR_PIPE)"), std::string::npos)
        << detailOf(id);
    EXPECT_NE(detailOf(id).find("check the hub's power supply"), std::string::npos) << detailOf(id);
    EXPECT_EQ(healthOf(*inventory_->phone(id), false), std::string(kHealthNeedsAttention));
  }
  EXPECT_EQ(reasonOf("phone_03"), "");  // another hub

  // Each phone is still healed on its own; a heal that fails leaves the
  // hub as the reason (it says more than "reset failed").
  advance(30s);
  advance(2s);
  EXPECT_GE(heal_->stats().failed, 2u);
  EXPECT_EQ(reasonOf("phone_01"), "hub");
  EXPECT_EQ(reasonOf("phone_02"), "hub");

  // A phone that is back needs nobody; the other still does.
  lists({{"USBSERIAL01", "device"}, {"USBSERIAL03", "device"}});
  EXPECT_EQ(reasonOf("phone_01"), "");
  EXPECT_EQ(reasonOf("phone_02"), "hub");
  EXPECT_NE(std::find(announced_.begin(), announced_.end(), "phone_01"), announced_.end());
  allUp();
  EXPECT_EQ(reasonOf("phone_02"), "");
}

TEST_F(HubHealTest, TheHubsBackOffHoldingOffAPowerCycleSendsATechnicianToTheHub) {
  makeServices();
  allUp();
  usb_.power_cycle_fails = true;
  lists({{"USBSERIAL03", "device"}});
  ASSERT_EQ(reasonOf("phone_01"), "hub");
  advance(1s);
  allUp();  // back on their own: cleared
  EXPECT_EQ(reasonOf("phone_01"), "");
  EXPECT_EQ(reasonOf("phone_02"), "");

  // Again, after the hub window but within the 60 s back-off: no power
  // cycle, and the phones that are down need a technician at the hub.
  advance(11s);
  lists({{"USBSERIAL02", "device"}, {"USBSERIAL03", "device"}});
  EXPECT_EQ(reasonOf("phone_01"), "");  // one phone alone is no hub event
  lists({{"USBSERIAL03", "device"}});
  EXPECT_EQ(heal_->stats().hub_events, 2u);
  EXPECT_EQ(usb_.power_cycles, 1);
  EXPECT_EQ(hub(heal_->hubsJson(), "1-1").at("last_event").at("action"), "none");
  for (const char* id : {"phone_01", "phone_02"}) {
    EXPECT_EQ(reasonOf(id), "hub") << id;
    EXPECT_NE(detailOf(id).find("does not power-cycle hub 1-1 for another"), std::string::npos) << detailOf(id);
  }
  // Cleared phone by phone, as each comes back.
  lists({{"USBSERIAL02", "device"}, {"USBSERIAL03", "device"}});
  EXPECT_EQ(reasonOf("phone_02"), "");
  EXPECT_EQ(reasonOf("phone_01"), "hub");
}

TEST_F(HubHealTest, AHubEventWithoutAFailedPowerCycleSendsNobody) {
  makeServices();
  allUp();
  config_.reset.hub_power_cycle = false;  // read at the event: each phone is healed alone
  lists({{"USBSERIAL03", "device"}});
  EXPECT_EQ(heal_->stats().hub_events, 1u);
  EXPECT_EQ(reasonOf("phone_01"), "");
  EXPECT_EQ(reasonOf("phone_02"), "");
}

TEST_F(HubHealTest, NoPowerCycleWhileAPhoneOfTheHubRunsAnItemOrWhenNotAllowed) {
  makeServices();
  allUp();
  busy_ = true;
  lists({{"USBSERIAL03", "device"}});
  EXPECT_EQ(heal_->stats().hub_events, 1u);
  EXPECT_EQ(usb_.power_cycles, 0);
  EXPECT_EQ(hub(heal_->hubsJson(), "1-1").at("last_event").at("action"), "none");
}

TEST_F(HubHealTest, DropsFurtherApartThanTheHubWindowAreNoHubEvent) {
  makeServices();
  allUp();
  lists({{"USBSERIAL02", "device"}, {"USBSERIAL03", "device"}});
  advance(11s);
  lists({{"USBSERIAL03", "device"}});
  EXPECT_EQ(heal_->stats().hub_events, 0u);
  EXPECT_EQ(usb_.power_cycles, 0);
}

}  // namespace
}  // namespace phonefarm::phone
