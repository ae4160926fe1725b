// AsioEventLoop: timers, fd watches, signal handlers and posted work on one
// io_context. Everything here runs on the loop thread except post(),
// runAfter() and stop(), which only hand work to Asio (thread-safe).
#include "common/os/asio_event_loop.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <exception>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/os/sys_error.hpp"

namespace phonefarm::os {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// Callbacks run on the loop thread; one that throws must not take the whole
// loop (and with it HTTP and the executor) down.
void runGuarded(const char* what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    spdlog::error("loop.callback.failed kind={} error={}", what, e.what());
  } catch (...) {
    spdlog::error("loop.callback.failed kind={} error=unknown", what);
  }
}

}  // namespace

class AsioEventLoop::Impl {
 public:
  Impl() : ioc_(1), work_(asio::make_work_guard(ioc_)) {}

  // Members are destroyed after this, the io_context last.
  ~Impl() {
    // Handlers still queued in the io_context share the watches; release the
    // fds now, as they belong to the callers and must not be closed with them.
    for (auto& [id, watch] : watches_) watch->descriptor.release();
  }

  asio::io_context& ioContext() { return ioc_; }

  void run() { ioc_.run(); }

  // Signal sets and timers hold work too: stop() makes run() return anyway.
  void stop() { ioc_.stop(); }

  void post(std::function<void()> fn) {
    asio::post(ioc_, [fn = std::move(fn)] { runGuarded("post", fn); });
  }

  void addSignalHandler(int signo, std::function<void()> fn) {
    auto set = std::make_unique<asio::signal_set>(ioc_, signo);
    armSignal(*set, std::make_shared<std::function<void()>>(std::move(fn)));
    signals_.push_back(std::move(set));
  }

  void runAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
    // The timer is created on the loop thread: timers are not thread-safe.
    asio::post(ioc_, [this, delay, fn = std::move(fn)]() mutable { startTimer(delay, std::move(fn)); });
  }

  EventLoop::Id startTimer(std::chrono::milliseconds delay, std::function<void()> fn) {
    const auto id = next_id_++;
    auto& timer = *timers_.emplace(id, std::make_unique<asio::steady_timer>(ioc_, delay)).first->second;
    timer.async_wait([this, id, fn = std::move(fn)](error_code ec) {
      // A timer cancelled after it expired still completes with success: the
      // map, not ec, says whether it is live. Erase first so fn may start or
      // cancel timers (its own id included) freely.
      if (timers_.erase(id) == 0 || ec) return;
      runGuarded("timer", fn);
    });
    return id;
  }

  // Destroying the timer cancels its wait.
  void cancelTimer(EventLoop::Id id) { timers_.erase(id); }

  Result<EventLoop::Id> watchReadable(int fd, std::function<void()> fn) {
    auto watch = std::make_shared<Watch>(ioc_, std::move(fn));
    error_code ec;
    watch->descriptor.assign(fd, ec);
    if (ec) return sysError("event loop: watch fd " + std::to_string(fd), ec.value());
    const auto id = next_id_++;
    watches_.emplace(id, watch);
    armWatch(id, watch);
    return id;
  }

  void unwatch(EventLoop::Id id) {
    const auto it = watches_.find(id);
    if (it == watches_.end()) return;
    // release() aborts the pending wait and gives the fd back without closing
    // it. Queued handlers (or fn itself, if it is unwatching its own id) keep
    // the Watch alive; they find the id gone and stop.
    it->second->descriptor.release();
    watches_.erase(it);
  }

 private:
  struct Watch {
    Watch(asio::io_context& ioc, std::function<void()> f) : descriptor(ioc), fn(std::move(f)) {}
    asio::posix::stream_descriptor descriptor;
    std::function<void()> fn;
    bool failed = false;  // the last wait failed
  };

  void armSignal(asio::signal_set& set, const std::shared_ptr<std::function<void()>>& fn) {
    set.async_wait([this, &set, fn](error_code ec, int) {
      if (ec) return;
      armSignal(set, fn);  // re-arm first so a signal during fn is not lost
      runGuarded("signal", *fn);
    });
  }

  bool watching(EventLoop::Id id) const { return watches_.count(id) != 0; }

  // Level-triggered although Asio registers the fd edge-triggered: each
  // non-speculative async_wait re-arms it with EPOLL_CTL_MOD, which reports
  // readiness that is already there. fn runs from the completion, so a
  // callback that never drains still yields to other work between calls.
  void armWatch(EventLoop::Id id, const std::shared_ptr<Watch>& watch) {
    watch->descriptor.async_wait(asio::posix::stream_descriptor::wait_read, [this, id, watch](error_code ec) {
      if (ec == asio::error::operation_aborted || !watching(id)) return;
      if (ec) return onWatchError(id, watch, ec);
      watch->failed = false;
      runGuarded("watch", watch->fn);
      if (watching(id)) armWatch(id, watch);
    });
  }

  // fn gets one call to discover the error itself (read, waitid); if the
  // error comes straight back the watch goes quiet rather than spin.
  void onWatchError(EventLoop::Id id, const std::shared_ptr<Watch>& watch, const error_code& ec) {
    const int fd = watch->descriptor.native_handle();
    if (watch->failed) {
      spdlog::warn("loop.watch.stopped fd={} error=\"{}\"", fd, ec.message());
      return;
    }
    spdlog::warn("loop.watch.failed fd={} error=\"{}\"", fd, ec.message());
    watch->failed = true;
    runGuarded("watch", watch->fn);
    if (watching(id)) armWatch(id, watch);
  }

  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::unique_ptr<asio::signal_set>> signals_;
  // Timers and watches; ids are shared and never reused, so a stale handler
  // cannot mistake a newer entry for its own.
  EventLoop::Id next_id_ = 1;
  std::unordered_map<EventLoop::Id, std::unique_ptr<asio::steady_timer>> timers_;
  std::unordered_map<EventLoop::Id, std::shared_ptr<Watch>> watches_;
};

AsioEventLoop::AsioEventLoop() : impl_(std::make_unique<Impl>()) {}
AsioEventLoop::~AsioEventLoop() = default;

void AsioEventLoop::post(std::function<void()> fn) { impl_->post(std::move(fn)); }
EventLoop::Id AsioEventLoop::startTimer(std::chrono::milliseconds delay, std::function<void()> fn) {
  return impl_->startTimer(delay, std::move(fn));
}
void AsioEventLoop::cancelTimer(Id id) { impl_->cancelTimer(id); }
Result<EventLoop::Id> AsioEventLoop::watchReadable(int fd, std::function<void()> fn) {
  return impl_->watchReadable(fd, std::move(fn));
}
void AsioEventLoop::unwatch(Id id) { impl_->unwatch(id); }
void AsioEventLoop::addSignalHandler(int signo, std::function<void()> fn) {
  impl_->addSignalHandler(signo, std::move(fn));
}
void AsioEventLoop::runAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
  impl_->runAfter(delay, std::move(fn));
}
void AsioEventLoop::run() { impl_->run(); }
void AsioEventLoop::stop() { impl_->stop(); }
boost::asio::io_context& AsioEventLoop::ioContext() { return impl_->ioContext(); }

}  // namespace phonefarm::os
