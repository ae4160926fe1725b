// FakeBlockingRunner: keeps the jobs a phone class hands off and runs them on
// the test's thread when the test says so, so a test steps through the work
// with no threads and no sleeps.
#pragma once

#include <deque>
#include <functional>
#include <mutex>

#include "agent/phone/blocking_runner.hpp"

namespace phonefarm::phone {

class FakeBlockingRunner final : public BlockingRunner {
 public:
  void run(std::function<void()> job) override {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  std::size_t pending() const {
    std::lock_guard lock(mutex_);
    return jobs_.size();
  }
  // Runs the queued jobs (not those they queue); returns how many ran.
  std::size_t runPending() {
    std::deque<std::function<void()>> jobs;
    {
      std::lock_guard lock(mutex_);
      jobs.swap(jobs_);
    }
    for (auto& job : jobs) job();
    return jobs.size();
  }

 private:
  mutable std::mutex mutex_;
  std::deque<std::function<void()>> jobs_;
};

}  // namespace phonefarm::phone
