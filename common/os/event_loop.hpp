// EventLoop: what the agent's components need from the daemon's one event
// loop — posting, cancellable one-shot timers and readiness watches on file
// descriptors (pidfds, inotify fds) — without including Asio. The daemon
// owns the implementation (AsioEventLoop, asio_event_loop.hpp); unit tests use
// a fake that they step by hand.
//
// Every callback runs on the loop's thread. Except post(), every function must
// be called on that thread too.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "common/result.hpp"

namespace phonefarm::os {

class EventLoop {
 public:
  using Id = std::uint64_t;  // never 0; 0 means "none"

  virtual ~EventLoop() = default;

  // Runs fn on the loop thread. Thread-safe.
  virtual void post(std::function<void()> fn) = 0;

  // Runs fn once after `delay` (zero or negative: as soon as possible) unless
  // cancelled first.
  virtual Id startTimer(std::chrono::milliseconds delay, std::function<void()> fn) = 0;
  // Idempotent; unknown or already fired ids are ignored. A cancelled timer's
  // callback never runs.
  virtual void cancelTimer(Id id) = 0;

  // Calls fn each time `fd` is readable (level-triggered: fn must consume the
  // readiness, e.g. drain an inotify fd, or unwatch) until unwatch(). The fd
  // stays owned by the caller, who must unwatch before closing it. Fails if
  // the fd cannot be watched (not open, or watched already).
  virtual Result<Id> watchReadable(int fd, std::function<void()> fn) = 0;
  // Idempotent; after it returns fn is never called again for this id.
  virtual void unwatch(Id id) = 0;
};

}  // namespace phonefarm::os
