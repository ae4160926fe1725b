// AsioEventLoop: the daemon's one event loop, an Asio io_context run on one
// thread (pf-io). It is the production os::EventLoop (the executor's timers
// and pidfd/inotify watches) and carries what only the daemon needs: signal
// handlers, thread-safe delayed work, run() and stop(). The HTTP server serves
// on its io_context (ioContext()) but does not own it.
//
// This header names Asio only by a forward declaration (pimpl): it is
// included widely and Asio is expensive to compile.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "common/os/event_loop.hpp"
#include "common/result.hpp"

namespace boost::asio {
class io_context;
}

namespace phonefarm::os {

class AsioEventLoop final : public EventLoop {
 public:
  AsioEventLoop();
  // run() must have returned (or never been called). Timers and watches still
  // pending never fire: their callbacks are destroyed and watched fds are
  // left open (they belong to the callers). Anything built on ioContext() must
  // be destroyed first.
  ~AsioEventLoop() override;
  AsioEventLoop(const AsioEventLoop&) = delete;
  AsioEventLoop& operator=(const AsioEventLoop&) = delete;

  // os::EventLoop. post() is thread-safe; the others must be called on the
  // loop thread, or before run(). Callbacks that throw are logged
  // (`loop.callback.failed`) and swallowed.
  void post(std::function<void()> fn) override;
  Id startTimer(std::chrono::milliseconds delay, std::function<void()> fn) override;
  void cancelTimer(Id id) override;
  // Fails (os::sysError of the errno) if fd cannot be watched: not open, or
  // already watched (each fd may have one watch at a time).
  Result<Id> watchReadable(int fd, std::function<void()> fn) override;
  void unwatch(Id id) override;

  // Runs fn on the loop thread each time signo is delivered. Call before run()
  // or from the loop thread.
  void addSignalHandler(int signo, std::function<void()> fn);

  // Runs fn on the loop thread after delay. Thread-safe.
  void runAfter(std::chrono::milliseconds delay, std::function<void()> fn);

  // Runs the loop on the calling thread (which becomes the loop thread) until
  // stop(). Returns at once if stop() came first.
  void run();

  // Thread-safe and idempotent: run() returns as soon as the callback in
  // progress (if any) is done; nothing else pending runs.
  void stop();

  // For the HTTP server, which runs its sockets on this loop.
  boost::asio::io_context& ioContext();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace phonefarm::os
