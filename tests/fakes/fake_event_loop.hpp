// FakeEventLoop: an os::EventLoop the test steps by hand — posted callbacks
// and timers run only in runPosted()/advance(), on the test's thread, and
// time is a number the test moves. (No fd watches: the phone classes use none.)
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <utility>

#include "common/os/event_loop.hpp"

namespace phonefarm::os {

class FakeEventLoop final : public EventLoop {
 public:
  void post(std::function<void()> fn) override {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(fn));
  }
  Id startTimer(std::chrono::milliseconds delay, std::function<void()> fn) override {
    const Id id = next_id_++;
    timers_[id] = Timer{now_ + std::max(delay, std::chrono::milliseconds::zero()), std::move(fn)};
    return id;
  }
  void cancelTimer(Id id) override { timers_.erase(id); }
  Result<Id> watchReadable(int, std::function<void()>) override { return next_id_++; }
  void unwatch(Id) override {}

  // Runs posted callbacks (and what they post) until none is left.
  std::size_t runPosted() {
    std::size_t n = 0;
    for (;;) {
      std::function<void()> fn;
      {
        std::lock_guard lock(mutex_);
        if (posted_.empty()) return n;
        fn = std::move(posted_.front());
        posted_.pop_front();
      }
      fn();
      ++n;
    }
  }

  // Moves the fake time by `by`, firing the timers that fall due, in order,
  // with posted work run in between.
  void advance(std::chrono::milliseconds by) {
    const auto until = now_ + by;
    runPosted();
    for (;;) {
      auto next = timers_.end();
      for (auto it = timers_.begin(); it != timers_.end(); ++it) {
        if (it->second.at <= until && (next == timers_.end() || it->second.at < next->second.at)) next = it;
      }
      if (next == timers_.end()) break;
      now_ = next->second.at;
      auto fn = std::move(next->second.fn);
      timers_.erase(next);
      fn();
      runPosted();
    }
    now_ = until;
  }

  std::size_t timers() const { return timers_.size(); }
  // The delay until the earliest timer; nullopt-free: max() when none.
  std::chrono::milliseconds nextTimerIn() const {
    auto best = std::chrono::milliseconds::max();
    for (const auto& [id, t] : timers_) best = std::min(best, t.at - now_);
    return best;
  }

 private:
  struct Timer {
    std::chrono::milliseconds at;
    std::function<void()> fn;
  };
  std::mutex mutex_;
  std::deque<std::function<void()>> posted_;
  std::map<Id, Timer> timers_;
  std::chrono::milliseconds now_{0};
  Id next_id_ = 1;
};

}  // namespace phonefarm::os
