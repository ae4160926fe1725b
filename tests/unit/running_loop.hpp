// RunningLoop: an os::AsioEventLoop run on its own thread for the event loop's
// and the HTTP server's unit tests. The destructor stops the loop and aborts
// the test binary (rather than hanging CI) if run() does not return. Helpers
// let a test act on the loop thread under a deadline instead of sleeping.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include "common/os/asio_event_loop.hpp"

namespace phonefarm::os::test {

class RunningLoop {
 public:
  RunningLoop() : stopped_(stopped_promise_.get_future()) {}
  ~RunningLoop() {
    if (!thread_.joinable()) return;
    loop_.stop();
    joinWithin(std::chrono::seconds(10), "watchdog: AsioEventLoop::run() did not return 10 s after stop()");
  }
  RunningLoop(const RunningLoop&) = delete;
  RunningLoop& operator=(const RunningLoop&) = delete;

  AsioEventLoop& loop() { return loop_; }

  // Runs the loop on a new thread (once).
  void start() {
    thread_ = std::thread([this] {
      loop_.run();
      stopped_promise_.set_value();
    });
  }

  bool waitStopped(std::chrono::milliseconds timeout) {
    return stopped_.wait_for(timeout) == std::future_status::ready;
  }

  // Joins the loop thread once run() has returned; aborts with `message` if
  // that takes longer than `timeout`.
  void joinWithin(std::chrono::seconds timeout, const char* message) {
    if (!thread_.joinable()) return;
    if (stopped_.wait_for(timeout) != std::future_status::ready) {
      std::fprintf(stderr, "%s\n", message);
      std::abort();
    }
    thread_.join();
  }

  // Runs fn on the loop thread and returns its result, or rethrows what it
  // threw (throws if the loop does not run it within 5 s).
  template <class F>
  auto onLoop(F fn) {
    auto task = std::make_shared<std::packaged_task<decltype(fn())()>>(std::move(fn));
    auto result = task->get_future();
    loop_.post([task] { (*task)(); });
    if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      throw std::runtime_error("loop thread did not run the task in 5 s");
    }
    return result.get();
  }

  // Returns once everything posted before this call has run on the loop thread.
  void sync() {
    onLoop([] {});
  }

 private:
  AsioEventLoop loop_;
  std::promise<void> stopped_promise_;
  std::shared_future<void> stopped_;
  std::thread thread_;
};

}  // namespace phonefarm::os::test
