// FakeLoop: an os::EventLoop for unit tests, stepped by hand on the test's
// thread. No real time passes for timers: the test moves a fake timeline (and
// the FakeClock with it, when it is given one); readiness of a watched fd is
// fired by the test. Only runUntil() waits in real time, for work other
// threads post, under a deadline.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "common/os/event_loop.hpp"
#include "tests/fakes/fake_clock.hpp"

namespace phonefarm::os {

// Posted work is a thread-safe queue; timers live on a fake millisecond
// timeline that only advance() moves (it moves the FakeClock along, so wall
// deadlines and loop timers agree; without one the test moves its clock
// itself); watches are kept by fd and fired by hand.
class FakeLoop final : public os::EventLoop {
 public:
  FakeLoop() = default;
  explicit FakeLoop(FakeClock& clock) : clock_(&clock) {}

  void post(std::function<void()> fn) override {
    {
      std::lock_guard lock(mu_);
      posted_.push_back(std::move(fn));
    }
    cv_.notify_all();
  }

  Id startTimer(std::chrono::milliseconds delay, std::function<void()> fn) override {
    const Id id = next_id_++;
    timers_[id] = Timer{now_ms_ + std::max<std::int64_t>(0, delay.count()), std::move(fn)};
    return id;
  }
  void cancelTimer(Id id) override { timers_.erase(id); }

  Result<Id> watchReadable(int fd, std::function<void()> fn) override {
    const Id id = next_id_++;
    watches_[id] = Watch{fd, std::move(fn)};
    return id;
  }
  void unwatch(Id id) override { watches_.erase(id); }

  // Runs posted callbacks until the queue is empty; returns how many ran.
  std::size_t runPosted() {
    std::size_t n = 0;
    for (;;) {
      std::function<void()> fn;
      {
        std::lock_guard lock(mu_);
        if (posted_.empty()) return n;
        fn = std::move(posted_.front());
        posted_.pop_front();
      }
      ++ran_;
      ++n;
      fn();
    }
  }

  // Fires the timers due now (deadline <= the fake now), in deadline order,
  // running posted work in between.
  void runDueTimers() {
    runPosted();
    while (fireNextTimerUpTo(now_ms_)) runPosted();
  }

  // How long runUntil() waits for posts from other threads, in real time.
  static constexpr std::chrono::milliseconds kRealDeadline{5000};

  // Runs posted work and due timers until pred() holds; waits for posts from
  // other threads (store completions) until the real deadline.
  bool runUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = kRealDeadline) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      runDueTimers();
      if (pred()) return true;
      std::unique_lock lock(mu_);
      if (!cv_.wait_until(lock, deadline, [this] { return !posted_.empty(); })) {
        lock.unlock();
        return pred();
      }
    }
  }

  // Moves the fake timeline (and the clock) forward by `ms`, firing every
  // timer that falls due on the way at its deadline, posted work in between.
  void advance(std::int64_t ms) {
    const std::int64_t target = now_ms_ + ms;
    runPosted();
    while (fireNextTimerUpTo(target)) runPosted();
    setNow(target);
    runPosted();
  }

  void advance(std::chrono::milliseconds by) { advance(static_cast<std::int64_t>(by.count())); }

  // "fd became readable": calls every callback registered for it.
  void fire(int fd) {
    std::vector<Id> ids;
    for (const auto& [id, w] : watches_) {
      if (w.fd == fd) ids.push_back(id);
    }
    for (Id id : ids) {
      auto it = watches_.find(id);
      if (it == watches_.end()) continue;  // unwatched by an earlier callback
      auto fn = it->second.fn;             // the callback may unwatch itself
      fn();
    }
    runPosted();
  }

  bool watching(int fd) const {
    return std::any_of(watches_.begin(), watches_.end(), [fd](const auto& kv) { return kv.second.fd == fd; });
  }
  std::size_t pendingTimers() const { return timers_.size(); }
  // The delay until the earliest timer; max() when none is armed.
  std::chrono::milliseconds nextTimerIn() const {
    std::int64_t best = std::chrono::milliseconds::max().count();
    for (const auto& [id, t] : timers_) best = std::min(best, t.deadline - now_ms_);
    return std::chrono::milliseconds(best);
  }
  std::uint64_t ran() const { return ran_; }
  std::int64_t nowMs() const { return now_ms_; }

 private:
  struct Timer {
    std::int64_t deadline = 0;
    std::function<void()> fn;
  };
  struct Watch {
    int fd = -1;
    std::function<void()> fn;
  };

  bool fireNextTimerUpTo(std::int64_t limit) {
    auto next = timers_.end();
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      // Ids grow, so equal deadlines fire in the order they were armed.
      if (next == timers_.end() || it->second.deadline < next->second.deadline) next = it;
    }
    if (next == timers_.end() || next->second.deadline > limit) return false;
    setNow(std::max(now_ms_, next->second.deadline));
    auto fn = std::move(next->second.fn);
    timers_.erase(next);
    fn();
    return true;
  }

  void setNow(std::int64_t ms) {
    if (clock_ != nullptr) clock_->advanceMs(ms - now_ms_);
    now_ms_ = ms;
  }

  FakeClock* clock_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> posted_;
  std::uint64_t ran_ = 0;
  std::int64_t now_ms_ = 0;
  Id next_id_ = 1;
  std::map<Id, Timer> timers_;
  std::map<Id, Watch> watches_;
};

}  // namespace phonefarm::os
