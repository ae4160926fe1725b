// The reset ladder, step by step: a fake event loop, a fake adb host, a fake
// USB backend and a runner that runs each step's blocking calls when the test
// says so — no threads, no sleeps; the step timeouts are fake-loop timers the
// test moves past. The store is real (the records are what the API shows).
// The test plays the adb server's device list by updating the Inventory and
// telling the service, as the daemon's device tracker does.
#include "agent/phone/reset_service.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

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

class ResetServiceTest : public ::testing::Test {
 protected:
  ResetServiceTest() {
    dir_ = std::filesystem::temp_directory_path() / ("reset-service-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store::StoreOptions options;
    options.path = dir_ / "agent.db";
    store_ = std::make_unique<store::Store>(options);
    config_.phones = {{"phone_01", "USBSERIAL01", std::string("1-1.4")}};
    inventory_ = std::make_unique<Inventory>(config_.phones);
    config_.reset.adb_reconnect_timeout = 1s;
    config_.reset.usb_reset_timeout = 2s;
  }
  ~ResetServiceTest() override {
    service_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void makeService() {
    auto runner = std::make_unique<FakeBlockingRunner>();
    runner_ = runner.get();
    service_ = std::make_unique<ResetService>(
        config_, *store_, clock_, loop_, *inventory_, adb_, usb_,
        [this](const std::string& id) { announced_.push_back(id); }, std::move(runner));
  }

  // Runs the step calls and the loop callbacks until the ladder waits on a
  // timer or has ended; no fake time passes.
  void settle() {
    while (runner_->runPending() + loop_.runPosted() > 0) {
    }
  }

  // The adb server lists the phone in `state` (the tracker's update).
  void serverLists(const std::string& state) {
    inventory_->update({AdbDevice{"USBSERIAL01", state, {}}});
    service_->phoneStateChanged("phone_01");
  }

  std::optional<store::ResetRecord> stored() {
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

  // The ladder has ended (the phone was announced); its stored record.
  store::ResetRecord finished() {
    EXPECT_EQ(announced_, std::vector<std::string>{"phone_01"});
    EXPECT_FALSE(service_->resetting("phone_01"));
    auto r = stored();
    EXPECT_TRUE(r.has_value());
    return r.value_or(store::ResetRecord{});
  }

  static std::vector<std::string> stepStatuses(const store::ResetRecord& r) {
    std::vector<std::string> out;
    for (const auto& s : r.steps)
      out.push_back(std::string(s.at("step").as_string()) + ":" + std::string(s.at("status").as_string()));
    return out;
  }
  static std::string detail(const store::ResetRecord& r, std::size_t step) {
    return r.steps.size() > step ? std::string(r.steps.at(step).at("detail").as_string()) : std::string();
  }

  std::filesystem::path dir_;
  AgentConfig config_;
  FakeClock clock_;
  os::FakeLoop loop_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Inventory> inventory_;
  FakeAdbHost adb_;
  FakeUsb usb_;
  FakeBlockingRunner* runner_ = nullptr;
  std::unique_ptr<ResetService> service_;
  std::vector<std::string> announced_;
};

TEST_F(ResetServiceTest, AdbReconnectBringsThePhoneBack) {
  makeService();
  auto started = service_->requestReset("phone_01", "forced_cancel");
  ASSERT_TRUE(started.has_value());
  EXPECT_EQ(started->at("status"), "pending");
  EXPECT_TRUE(service_->resetting("phone_01"));
  EXPECT_FALSE(inventory_->canStart("phone_01", false));  // no work while resetting
  EXPECT_EQ(inventory_->phone("phone_01")->adb_state, kStateResetting);
  EXPECT_TRUE(adb_.calls().empty());  // the kick runs off the loop, not in requestReset

  settle();  // the kick, then the wait for `device`
  EXPECT_EQ(adb_.calls(), std::vector<std::string>{"reconnect USBSERIAL01"});
  EXPECT_EQ(loop_.pendingTimers(), 1u);
  EXPECT_EQ(loop_.nextTimerIn(), 1000ms);  // [reset] adb_reconnect_timeout
  loop_.advance(999ms);
  EXPECT_TRUE(service_->resetting("phone_01"));

  clock_.advanceMs(250);
  serverLists("device");
  settle();
  auto r = finished();
  EXPECT_EQ(r.reset_id, std::string(started->at("reset_id").as_string()));
  EXPECT_EQ(r.status, "succeeded");
  EXPECT_EQ(stepStatuses(r), std::vector<std::string>{"adb_reconnect:succeeded"});
  EXPECT_EQ(detail(r, 0), "reconnect USBSERIAL01; back in device state");
  EXPECT_EQ(loop_.pendingTimers(), 0u);  // the timeout was cancelled
  EXPECT_EQ(usb_.resets, 0);
  EXPECT_TRUE(inventory_->canStart("phone_01", true));
  EXPECT_FALSE(inventory_->phone("phone_01")->needs_attention);
  EXPECT_EQ(service_->stats().succeeded, 1u);
}

TEST_F(ResetServiceTest, APhoneBackBeforeTheWaitBeginsCounts) {
  adb_.on_reconnect = [this] { inventory_->update({AdbDevice{"USBSERIAL01", "device", {}}}); };
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  auto r = finished();
  EXPECT_EQ(stepStatuses(r), std::vector<std::string>{"adb_reconnect:succeeded"});
}

TEST_F(ResetServiceTest, ADeviceStateFromBeforeTheKickDoesNotCount) {
  inventory_->update({AdbDevice{"USBSERIAL01", "device", {}}});  // stale: the phone is wedged, adb still lists it
  usb_.present = false;
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  service_->phoneStateChanged("phone_01");  // nothing changed since the kick
  settle();
  EXPECT_TRUE(service_->resetting("phone_01"));
  loop_.advance(1000ms);
  settle();
  auto r = finished();
  // adb_reconnect failed on its timeout; the phone's `device` then ends the ladder as it stands.
  EXPECT_EQ(stepStatuses(r), std::vector<std::string>{"adb_reconnect:failed"});
  EXPECT_EQ(detail(r, 0), "reconnect USBSERIAL01; not back in device state within 1 s");
  EXPECT_EQ(r.status, "succeeded");
}

TEST_F(ResetServiceTest, AdbReconnectTimesOutThenUsbResetBringsThePhoneBack) {
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  loop_.advance(1000ms);              // adb_reconnect's timeout
  EXPECT_EQ(runner_->pending(), 1u);  // usb_reset's calls, handed off
  EXPECT_EQ(usb_.resets, 0);
  usb_.on_reset = [this] { serverLists("device"); };  // the phone re-enumerates
  settle();
  auto r = finished();
  EXPECT_EQ(r.status, "succeeded");
  EXPECT_EQ(stepStatuses(r), (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:succeeded"}));
  EXPECT_EQ(detail(r, 1), "usb reset 1-1.4; back in device state");
  EXPECT_EQ(usb_.resets, 1);
  EXPECT_EQ(usb_.power_cycles, 0);
}

TEST_F(ResetServiceTest, AnAdbErrorFailsTheStepAtOnce) {
  adb_.reconnect_result = makeError(ErrorKind::kUnavailable, "adb server not running at 127.0.0.1:5037");
  usb_.present = false;
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  auto r = finished();
  EXPECT_EQ(r.status, "failed");
  EXPECT_EQ(stepStatuses(r),
            (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:skipped", "hub_power_cycle:skipped"}));
  EXPECT_EQ(detail(r, 0), "reconnect USBSERIAL01: adb server not running at 127.0.0.1:5037");
  EXPECT_NE(detail(r, 1).find("USBSERIAL01"), std::string::npos);
  EXPECT_EQ(usb_.resets, 0);
  EXPECT_FALSE(inventory_->canStart("phone_01", false));  // needs_attention
  EXPECT_TRUE(inventory_->phone("phone_01")->needs_attention);
  EXPECT_EQ(service_->stats().failed, 1u);
}

TEST_F(ResetServiceTest, ANetworkPhoneIsDisconnectedAndConnectedAndHasNoUsbSteps) {
  config_.phones = {{"phone_01", "10.0.0.5:5555", std::nullopt}};
  inventory_ = std::make_unique<Inventory>(config_.phones);
  adb_.connect_result = makeError(ErrorKind::kUnavailable, "failed to connect to 10.0.0.5:5555");
  config_.reset.hub_power_cycle = true;
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  auto r = finished();
  EXPECT_EQ(adb_.calls(), (std::vector<std::string>{"disconnect 10.0.0.5:5555", "connect 10.0.0.5:5555"}));
  EXPECT_EQ(stepStatuses(r),
            (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:skipped", "hub_power_cycle:skipped"}));
  EXPECT_EQ(detail(r, 0), "disconnect + connect 10.0.0.5:5555: failed to connect to 10.0.0.5:5555");
  EXPECT_EQ(r.status, "failed");
}

TEST_F(ResetServiceTest, ResetErrorIsAFailedStep) {
  usb_.reset_fails = true;
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  loop_.advance(1000ms);
  settle();
  auto r = finished();
  EXPECT_EQ(r.status, "failed");
  EXPECT_EQ(stepStatuses(r),
            (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:failed", "hub_power_cycle:skipped"}));
  EXPECT_NE(detail(r, 1).find("LIBUSB_ERROR_IO"), std::string::npos);
}

TEST_F(ResetServiceTest, NoReEnumerationWithinTheTimeoutFailsAndHubPowerCycleRunsWhenEnabled) {
  config_.reset.hub_power_cycle = true;
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  loop_.advance(1000ms);  // adb_reconnect
  settle();
  EXPECT_EQ(usb_.resets, 1);
  EXPECT_EQ(loop_.nextTimerIn(), 2000ms);  // [reset] usb_reset_timeout
  loop_.advance(1999ms);
  EXPECT_EQ(usb_.power_cycles, 0);
  loop_.advance(1ms);  // usb_reset
  settle();
  EXPECT_EQ(usb_.power_cycles, 1);
  loop_.advance(2000ms);  // hub_power_cycle
  settle();
  auto r = finished();
  EXPECT_EQ(r.status, "failed");
  EXPECT_EQ(stepStatuses(r),
            (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:failed", "hub_power_cycle:failed"}));
  EXPECT_EQ(detail(r, 1), "usb reset 1-1.4; not back in device state within 2 s");
}

TEST_F(ResetServiceTest, APhoneGoneFromTheBusIsPowerCycledThroughItsConfiguredPort) {
  usb_.present = false;
  config_.reset.hub_power_cycle = true;
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  loop_.advance(1000ms);
  settle();
  loop_.advance(2000ms);
  settle();
  auto r = finished();
  EXPECT_EQ(stepStatuses(r),
            (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:skipped", "hub_power_cycle:failed"}));
  EXPECT_EQ(usb_.power_cycles, 1);
  EXPECT_NE(detail(r, 2).find("1-1.4"), std::string::npos);
}

TEST_F(ResetServiceTest, StepTimesComeFromTheClock) {
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  clock_.advanceMs(1500);
  serverLists("device");
  settle();
  auto r = finished();
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.steps[0].at("started_at").as_string(), formatRfc3339(FakeClock().wallNowMs()));
  EXPECT_EQ(r.steps[0].at("ended_at").as_string(), formatRfc3339(FakeClock().wallNowMs() + 1500));
}

TEST_F(ResetServiceTest, ASecondRequestJoinsTheRunningReset) {
  makeService();
  auto first = service_->requestReset("phone_01", "forced_cancel");
  auto second = service_->requestReset("phone_01", "timeout");
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->at("reset_id"), second->at("reset_id"));
  EXPECT_EQ(runner_->pending(), 1u);  // one ladder
  settle();
  serverLists("device");
  settle();
  finished();
  EXPECT_EQ(service_->stats().started, 1u);
  EXPECT_EQ(service_->stats().joined, 1u);
}

TEST_F(ResetServiceTest, ANewResetAfterTheLastOneEndedStartsAfresh) {
  makeService();
  for (int i = 0; i < 2; ++i) {
    announced_.clear();
    inventory_->update({});  // the phone drops again
    auto started = service_->requestReset("phone_01", "forced_cancel");
    ASSERT_TRUE(started.has_value());
    EXPECT_EQ(started->at("status"), "pending");
    settle();
    serverLists("device");
    settle();
    EXPECT_EQ(finished().status, "succeeded");
  }
  EXPECT_EQ(service_->stats().started, 2u);
}

TEST_F(ResetServiceTest, DestroyedWhileWaitingForTheDevice) {
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  settle();
  EXPECT_EQ(loop_.pendingTimers(), 1u);
  service_.reset();  // must neither hang nor touch the ladder again
  EXPECT_TRUE(announced_.empty());
}

TEST_F(ResetServiceTest, ForcedResetsCanBeTurnedOff) {
  config_.reset.on_forced_cancel = false;
  makeService();
  EXPECT_FALSE(service_->requestReset("phone_01", "forced_cancel").has_value());
  EXPECT_FALSE(service_->resetting("phone_01"));
  EXPECT_FALSE(service_->requestReset("phone_99", "forced_cancel").has_value());
  EXPECT_EQ(runner_->pending(), 0u);
}

// The real runner: a thread per job, named, and finished threads are joined
// at the next run() rather than piling up.
TEST(ThreadPerJobTest, RunsJobsOnNamedThreadsAndJoinsFinishedOnes) {
  ThreadPerJob runner("pf-reset");
  for (int i = 0; i < 3; ++i) {
    std::promise<std::string> name;
    auto f = name.get_future();
    runner.run([&name] {
      char buf[16] = {};
      ::pthread_getname_np(::pthread_self(), buf, sizeof buf);
      name.set_value(buf);
    });
    ASSERT_EQ(f.wait_for(kStoreDeadline), std::future_status::ready);
    EXPECT_EQ(f.get(), "pf-reset");
  }
  EXPECT_LE(runner.threads(), 2u);  // never one per job ever run
}

}  // namespace
}  // namespace phonefarm::phone
