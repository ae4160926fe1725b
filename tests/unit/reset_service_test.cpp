// The reset ladder with a fake USB backend and a real store: which steps run,
// in what order, with what outcome, and the phone's health afterwards. The
// adb server is absent (a refused port), so adb_reconnect always fails and
// the ladder moves on to the USB steps; the test plays the adb server's
// device list by updating the Inventory itself.
#include "agent/phone/reset_service.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "common/store/phone_repository.hpp"
#include "tests/fakes/fake_clock.hpp"

namespace phonefarm::phone {
namespace {

using namespace std::chrono_literals;

class FakeUsb final : public UsbBackend {
 public:
  bool present = true;
  bool reset_fails = false;
  std::function<void()> on_reset;  // e.g. the phone re-enumerates
  std::atomic<int> resets{0};
  std::atomic<int> power_cycles{0};

  Result<UsbDeviceRef> find(const std::optional<std::string>& serial, const std::optional<std::string>&) override {
    if (!present) return makeError(ErrorKind::kNotFound, "no USB device with serial " + serial.value_or("?"));
    UsbDeviceRef d;
    d.port_path = "1-1.4";
    d.serial = serial;
    return d;
  }
  Status reset(const UsbDeviceRef&) override {
    ++resets;
    if (reset_fails) return makeError(ErrorKind::kInternal, "LIBUSB_ERROR_IO");
    if (on_reset) on_reset();
    return okStatus();
  }
  Status powerCycle(const UsbDeviceRef&, std::chrono::milliseconds) override {
    ++power_cycles;
    return okStatus();
  }
};

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
    config_.reset.adb_reconnect_timeout = 1s;
    config_.reset.usb_reset_timeout = 1s;
  }
  ~ResetServiceTest() override {
    service_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void makeService() {
    service_ =
        std::make_unique<ResetService>(config_, *store_, clock_, inventory_, adb_, usb_, [this](const std::string& id) {
          std::lock_guard lock(mutex_);
          announced_.push_back(id);
          cv_.notify_all();
        });
  }

  // Waits for the reset to end (the phone is announced) and returns the stored record.
  store::ResetRecord finished() {
    std::unique_lock lock(mutex_);
    EXPECT_TRUE(cv_.wait_for(lock, 10s, [this] { return !announced_.empty(); }));
    lock.unlock();
    std::promise<std::optional<store::ResetRecord>> p;
    store_->submit<std::optional<store::ResetRecord>>(
        [](store::Db& db) { return store::PhoneRepository(db).lastReset("phone_01"); },
        [&p](Result<std::optional<store::ResetRecord>> r) { p.set_value(r ? *r : std::nullopt); });
    auto r = p.get_future().get();
    EXPECT_TRUE(r.has_value());
    return r.value_or(store::ResetRecord{});
  }

  static std::vector<std::string> stepStatuses(const store::ResetRecord& r) {
    std::vector<std::string> out;
    for (const auto& s : r.steps)
      out.push_back(std::string(s.at("step").as_string()) + ":" + std::string(s.at("status").as_string()));
    return out;
  }

  std::filesystem::path dir_;
  AgentConfig config_;
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  Inventory inventory_{{{"phone_01", "USBSERIAL01", std::string("1-1.4")}}};
  AdbClient adb_{AdbEndpoint{"127.0.0.1", 1}};  // nothing listens: adb_reconnect fails at once
  FakeUsb usb_;
  std::unique_ptr<ResetService> service_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::string> announced_;
};

TEST_F(ResetServiceTest, UsbResetBringsThePhoneBack) {
  std::promise<void> gate;  // holds the ladder inside usb_reset while the test looks
  auto opened = gate.get_future().share();
  usb_.on_reset = [this, opened] {
    opened.wait();
    inventory_.update({AdbDevice{"USBSERIAL01", "device", {}}});
  };
  makeService();
  auto started = service_->requestReset("phone_01", "forced_cancel");
  ASSERT_TRUE(started.has_value());
  EXPECT_EQ(started->at("status"), "pending");
  EXPECT_TRUE(service_->resetting("phone_01"));
  EXPECT_FALSE(inventory_.canStart("phone_01", false));  // no work while resetting
  EXPECT_EQ(inventory_.phone("phone_01")->adb_state, kStateResetting);
  gate.set_value();
  auto r = finished();
  EXPECT_EQ(r.reset_id, std::string(started->at("reset_id").as_string()));
  EXPECT_EQ(r.status, "succeeded");
  EXPECT_EQ(stepStatuses(r), (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:succeeded"}));
  EXPECT_EQ(usb_.resets, 1);
  EXPECT_EQ(usb_.power_cycles, 0);
  EXPECT_TRUE(inventory_.canStart("phone_01", true));
  EXPECT_EQ(service_->stats().succeeded, 1u);
}

TEST_F(ResetServiceTest, DeviceNotFoundSkipsUsbResetAndTheLadderFails) {
  usb_.present = false;
  makeService();
  service_->requestReset("phone_01", "timeout");
  auto r = finished();
  EXPECT_EQ(r.status, "failed");
  EXPECT_EQ(stepStatuses(r),
            (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:skipped", "hub_power_cycle:skipped"}));
  EXPECT_NE(std::string(r.steps.at(1).at("detail").as_string()).find("USBSERIAL01"), std::string::npos);
  EXPECT_EQ(usb_.resets, 0);
  EXPECT_FALSE(inventory_.canStart("phone_01", false));  // needs_attention
  auto snap = inventory_.phone("phone_01");
  EXPECT_TRUE(snap->needs_attention);
}

TEST_F(ResetServiceTest, ResetErrorIsAFailedStep) {
  usb_.reset_fails = true;
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  auto r = finished();
  EXPECT_EQ(r.status, "failed");
  ASSERT_GE(r.steps.size(), 2u);
  EXPECT_EQ(r.steps.at(1).at("status"), "failed");
  EXPECT_NE(std::string(r.steps.at(1).at("detail").as_string()).find("LIBUSB_ERROR_IO"), std::string::npos);
}

TEST_F(ResetServiceTest, NoReEnumerationWithinTheTimeoutFailsAndHubPowerCycleRunsWhenEnabled) {
  config_.reset.hub_power_cycle = true;
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  auto r = finished();
  EXPECT_EQ(r.status, "failed");
  EXPECT_EQ(stepStatuses(r),
            (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:failed", "hub_power_cycle:failed"}));
  EXPECT_NE(std::string(r.steps.at(1).at("detail").as_string()).find("not back in device state"), std::string::npos);
  EXPECT_EQ(usb_.resets, 1);
  EXPECT_EQ(usb_.power_cycles, 1);
}

TEST_F(ResetServiceTest, APhoneGoneFromTheBusIsPowerCycledThroughItsConfiguredPort) {
  usb_.present = false;
  config_.reset.hub_power_cycle = true;
  makeService();
  service_->requestReset("phone_01", "forced_cancel");
  auto r = finished();
  EXPECT_EQ(stepStatuses(r),
            (std::vector<std::string>{"adb_reconnect:failed", "usb_reset:skipped", "hub_power_cycle:failed"}));
  EXPECT_EQ(usb_.power_cycles, 1);
  EXPECT_NE(std::string(r.steps.at(2).at("detail").as_string()).find("1-1.4"), std::string::npos);
}

TEST_F(ResetServiceTest, ASecondRequestJoinsTheRunningReset) {
  makeService();
  auto first = service_->requestReset("phone_01", "forced_cancel");
  auto second = service_->requestReset("phone_01", "timeout");
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->at("reset_id"), second->at("reset_id"));
  finished();
  EXPECT_EQ(service_->stats().started, 1u);
  EXPECT_EQ(service_->stats().joined, 1u);
}

TEST_F(ResetServiceTest, FinishedWorkersAreJoinedAtTheNextReset) {
  usb_.present = false;  // every ladder ends quickly (failed)
  makeService();
  for (int i = 0; i < 3; ++i) {
    {
      std::lock_guard lock(mutex_);
      announced_.clear();
    }
    service_->requestReset("phone_01", "forced_cancel");
    finished();
    // The worker announces the phone just before it finishes: wait until it has.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (service_->resetting("phone_01") && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  }
  EXPECT_LE(service_->workerThreads(), 2u);  // never one per reset ever made
  EXPECT_EQ(service_->stats().failed, 3u);
}

TEST_F(ResetServiceTest, ForcedResetsCanBeTurnedOff) {
  config_.reset.on_forced_cancel = false;
  makeService();
  EXPECT_FALSE(service_->requestReset("phone_01", "forced_cancel").has_value());
  EXPECT_FALSE(service_->resetting("phone_01"));
  EXPECT_FALSE(service_->requestReset("phone_99", "forced_cancel").has_value());
}

}  // namespace
}  // namespace phonefarm::phone
