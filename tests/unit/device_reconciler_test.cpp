// DeviceReconciler on a fake loop, clock and adb host: a round every
// interval (a loop timer, the next one armed when a round has ended), rounds
// skipped while the server is down, and network phones re-connected at most
// once per reconnect_every of the Clock. No threads, no sleeps.
#include "agent/phone/device_reconciler.hpp"

#include <gtest/gtest.h>

#include "tests/fakes/fake_adb_host.hpp"
#include "tests/fakes/fake_blocking_runner.hpp"
#include "tests/fakes/fake_clock.hpp"
#include "tests/fakes/fake_loop.hpp"

namespace phonefarm::phone {
namespace {

using namespace std::chrono_literals;

class DeviceReconcilerTest : public ::testing::Test {
 protected:
  void make(std::vector<std::string> network_serials = {}) {
    auto runner = std::make_unique<FakeBlockingRunner>();
    runner_ = runner.get();
    reconciler_ = std::make_unique<DeviceReconciler>(
        loop_, clock_, adb_, 2000ms, [this](std::vector<AdbDevice> list) { lists_.push_back(std::move(list)); },
        std::move(network_serials), 10000ms, std::move(runner));
    reconciler_->start();
    loop_.runPosted();
  }
  // One interval passes and the round it starts runs to its end.
  void round() {
    loop_.advance(2000ms);
    runner_->runPending();
    loop_.runPosted();
  }
  std::size_t count(const std::string& call) const {
    const auto calls = adb_.calls();
    return static_cast<std::size_t>(std::count(calls.begin(), calls.end(), call));
  }

  os::FakeLoop loop_;
  FakeClock clock_;
  FakeAdbHost adb_;
  FakeBlockingRunner* runner_ = nullptr;
  std::vector<std::vector<AdbDevice>> lists_;
  std::unique_ptr<DeviceReconciler> reconciler_;
};

TEST_F(DeviceReconcilerTest, ReadsTheListEveryIntervalAndHandsItOn) {
  adb_.devices_result = std::vector<AdbDevice>{{"R58M", "offline", {}}};
  make();
  EXPECT_EQ(loop_.nextTimerIn(), 2000ms);
  loop_.advance(1999ms);
  EXPECT_EQ(runner_->pending(), 0u);
  loop_.advance(1ms);
  EXPECT_EQ(runner_->pending(), 1u);     // the adb call runs off the loop
  EXPECT_EQ(loop_.pendingTimers(), 0u);  // the next interval starts when this round ends
  runner_->runPending();
  loop_.runPosted();
  ASSERT_EQ(lists_.size(), 1u);
  EXPECT_EQ(lists_[0], (std::vector<AdbDevice>{{"R58M", "offline", {}}}));
  EXPECT_EQ(loop_.nextTimerIn(), 2000ms);
  round();
  EXPECT_EQ(lists_.size(), 2u);
}

TEST_F(DeviceReconcilerTest, ASilentServerSkipsTheRoundButNotTheNext) {
  adb_.devices_result = makeError(ErrorKind::kUnavailable, "adb server not running");
  make();
  round();
  EXPECT_TRUE(lists_.empty());
  EXPECT_EQ(loop_.pendingTimers(), 1u);
  adb_.devices_result = std::vector<AdbDevice>{};
  round();
  EXPECT_EQ(lists_.size(), 1u);
}

TEST_F(DeviceReconcilerTest, AnUnlistedNetworkPhoneIsConnectedAtMostOncePerReconnectEvery) {
  adb_.devices_result = std::vector<AdbDevice>{{"10.0.0.6:5555", "device", {}}};
  make({"10.0.0.5:5555", "10.0.0.6:5555"});
  round();
  EXPECT_EQ(count("connect 10.0.0.5:5555"), 1u);
  EXPECT_EQ(count("connect 10.0.0.6:5555"), 0u);  // listed: left alone
  clock_.advanceMs(9999);
  round();
  EXPECT_EQ(count("connect 10.0.0.5:5555"), 1u);
  clock_.advanceMs(1);
  round();
  EXPECT_EQ(count("connect 10.0.0.5:5555"), 2u);
  EXPECT_EQ(lists_.size(), 3u);
}

TEST_F(DeviceReconcilerTest, NoRoundAfterStop) {
  make();
  reconciler_->stop();
  loop_.advance(2000ms);
  EXPECT_TRUE(adb_.calls().empty());
}

}  // namespace
}  // namespace phonefarm::phone
