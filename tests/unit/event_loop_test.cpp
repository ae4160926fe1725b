// os::AsioEventLoop, the daemon's event loop, on a thread of its own
// (RunningLoop): timers, level-triggered fd watches (pipes, pidfds), signals,
// posted work, stop(). Every wait has a deadline (future::wait_for); nothing
// sleeps to wait for state.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <future>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common/os/asio_event_loop.hpp"
#include "tests/unit/running_loop.hpp"

namespace phonefarm::os {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::RunningLoop;

// Both ends close with it; the read end is non-blocking unless flags say otherwise.
class Pipe {
 public:
  explicit Pipe(int flags = O_NONBLOCK) {
    int fds[2];
    if (::pipe2(fds, flags | O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    read_end_ = fds[0];
    write_end_ = fds[1];
  }
  ~Pipe() {
    if (read_end_ >= 0) ::close(read_end_);
    if (write_end_ >= 0) ::close(write_end_);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  int readEnd() const { return read_end_; }
  int writeEnd() const { return write_end_; }
  bool write(const std::string& data) const {
    return ::write(write_end_, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  }
  // Up to 64 bytes already in the pipe (the read end is non-blocking).
  std::string readAvailable() const {
    char buf[64];
    const auto n = ::read(read_end_, buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }

 private:
  int read_end_ = -1;
  int write_end_ = -1;
};

bool isOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(AsioEventLoopTest, IdsStartAtOneAndAreSharedByTimersAndWatches) {
  Pipe pipe;
  RunningLoop running;
  EventLoop& loop = running.loop();
  running.start();
  const auto ids = running.onLoop([&] {
    std::vector<EventLoop::Id> out;
    out.push_back(loop.startTimer(1h, [] {}));
    out.push_back(loop.watchReadable(pipe.readEnd(), [] {}).value());
    out.push_back(loop.startTimer(1h, [] {}));
    loop.cancelTimer(out[0]);
    loop.unwatch(out[1]);
    loop.cancelTimer(out[2]);
    return out;
  });
  EXPECT_EQ(ids, (std::vector<EventLoop::Id>{1, 2, 3}));
  // Not open, or watched already: an error, not an exception.
  const auto closed = running.onLoop([&] { return loop.watchReadable(-1, [] {}); });
  ASSERT_FALSE(closed);
  EXPECT_NE(closed.error().message.find("watch fd -1"), std::string::npos) << closed.error().message;
  const auto twice = running.onLoop([&] {
    const auto first = loop.watchReadable(pipe.readEnd(), [] {});
    auto second = loop.watchReadable(pipe.readEnd(), [] {});
    loop.unwatch(first.value());
    return second;
  });
  EXPECT_FALSE(twice);
}

TEST(AsioEventLoopTest, TimerFiresOnceAfterItsDelay) {
  std::promise<Clock::duration> fired;
  std::atomic<int> calls{0};
  RunningLoop running;
  EventLoop& loop = running.loop();
  running.start();
  const auto armed = Clock::now();
  const auto id = running.onLoop([&] {
    return loop.startTimer(100ms, [&] {
      if (calls++ == 0) fired.set_value(Clock::now() - armed);
    });
  });
  auto fired_future = fired.get_future();
  ASSERT_EQ(fired_future.wait_for(5s), std::future_status::ready);
  EXPECT_GE(fired_future.get(), 100ms);
  running.onLoop([&] { loop.cancelTimer(id); });  // already fired: ignored
  running.sync();
  EXPECT_EQ(calls.load(), 1);
}

TEST(AsioEventLoopTest, CancelledTimerNeverFires) {
  std::atomic<bool> cancelled_fired{false};
  std::promise<void> sentinel;
  RunningLoop running;
  EventLoop& loop = running.loop();
  running.start();
  running.onLoop([&] {
    const auto id = loop.startTimer(50ms, [&] { cancelled_fired = true; });
    loop.cancelTimer(id);
    loop.cancelTimer(id);       // idempotent
    loop.cancelTimer(999'999);  // unknown
    loop.startTimer(200ms, [&] { sentinel.set_value(); });
  });
  ASSERT_EQ(sentinel.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(cancelled_fired.load());
}

TEST(AsioEventLoopTest, TimerCancelledAfterItExpiredDoesNotRun) {
  // Both timers expire while the loop is blocked, so their completions are
  // queued in the same turn, earlier deadline first: the canceller runs while
  // the other's completion (with success, not operation_aborted) is pending.
  std::atomic<bool> late_fired{false};
  std::promise<void> cancelled;
  RunningLoop running;
  EventLoop& loop = running.loop();
  running.start();
  running.onLoop([&] {
    const auto late = loop.startTimer(30ms, [&] { late_fired = true; });
    loop.startTimer(10ms, [&, late] {
      loop.cancelTimer(late);
      cancelled.set_value();
    });
    std::this_thread::sleep_for(60ms);  // stalls the loop past both deadlines, not a wait for state
  });
  ASSERT_EQ(cancelled.get_future().wait_for(5s), std::future_status::ready);
  running.sync();  // the late timer's queued completion has run by now
  EXPECT_FALSE(late_fired.load());
}

TEST(AsioEventLoopTest, WatchOnAPipeIsLevelTriggered) {
  Pipe pipe;
  std::atomic<int> bytes_read{0};
  std::atomic<int> empty_calls{0};
  std::promise<void> three_read;
  std::promise<void> four_read;
  RunningLoop running;
  EventLoop& loop = running.loop();
  running.start();
  // One byte per call: the rest must bring the callback back.
  const auto id = running.onLoop([&] {
    return *loop.watchReadable(pipe.readEnd(), [&] {
      char c = 0;
      if (::read(pipe.readEnd(), &c, 1) != 1) {
        ++empty_calls;
        return;
      }
      const int n = ++bytes_read;
      if (n == 3) three_read.set_value();
      if (n == 4) four_read.set_value();
    });
  });
  running.sync();
  running.sync();
  EXPECT_EQ(bytes_read.load() + empty_calls.load(), 0);  // nothing written yet

  ASSERT_TRUE(pipe.write("abc"));
  ASSERT_EQ(three_read.get_future().wait_for(5s), std::future_status::ready);
  running.sync();
  running.sync();
  EXPECT_EQ(bytes_read.load(), 3);

  ASSERT_TRUE(pipe.write("d"));  // drained and quiet; new data wakes it again
  ASSERT_EQ(four_read.get_future().wait_for(5s), std::future_status::ready);
  running.onLoop([&] { loop.unwatch(id); });
  EXPECT_EQ(empty_calls.load(), 0);  // never called while nothing was readable
}

TEST(AsioEventLoopTest, UnwatchFromInsideTheCallbackStopsCallsAndLeavesTheFdOpen) {
  // Two readable pipes, never drained; whichever callback runs first unwatches
  // both (its own id included) while it is running.
  Pipe a;
  Pipe b;
  std::atomic<int> calls{0};
  std::promise<void> first_call;
  EventLoop::Id ids[2] = {0, 0};  // io thread only
  ASSERT_TRUE(a.write("x"));
  ASSERT_TRUE(b.write("y"));
  RunningLoop running;
  EventLoop& loop = running.loop();
  running.start();
  const auto callback = [&] {
    if (calls++ == 0) first_call.set_value();
    loop.unwatch(ids[0]);
    loop.unwatch(ids[1]);
    loop.unwatch(ids[0]);  // idempotent
  };
  running.onLoop([&] {
    ids[0] = loop.watchReadable(a.readEnd(), callback).value();
    ids[1] = loop.watchReadable(b.readEnd(), callback).value();
  });
  ASSERT_EQ(first_call.get_future().wait_for(5s), std::future_status::ready);
  running.sync();
  ASSERT_TRUE(isOpen(a.readEnd()));  // before writing: a closed read end would raise SIGPIPE
  ASSERT_TRUE(isOpen(b.readEnd()));
  ASSERT_TRUE(a.write("z"));
  running.sync();
  running.sync();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(a.readAvailable(), "xz");
  EXPECT_EQ(b.readAvailable(), "y");
}

TEST(AsioEventLoopTest, WatchOnAPidfdFiresWhenTheChildExits) {
  // The child exits once it can read a byte from `go`.
  Pipe go(0);
  struct Child {
    pid_t pid = -1;
    ~Child() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } child;
  child.pid = ::fork();
  ASSERT_GE(child.pid, 0);
  if (child.pid == 0) {
    char c = 0;
    ::close(go.writeEnd());
    const auto n = ::read(go.readEnd(), &c, 1);
    ::_exit(n == 1 ? 0 : 1);
  }
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child.pid, 0));
  ASSERT_GE(pidfd, 0) << "pidfd_open: " << std::strerror(errno);
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } close_pidfd{pidfd};

  std::atomic<int> calls{0};
  std::promise<void> exited;
  RunningLoop running;
  EventLoop& loop = running.loop();
  running.start();
  EventLoop::Id id = 0;  // io thread only
  running.onLoop([&] {
    id = *loop.watchReadable(pidfd, [&] {
      // An exited child's pidfd stays readable: without unwatch this would spin.
      loop.unwatch(id);
      if (calls++ == 0) exited.set_value();
    });
  });
  running.sync();
  running.sync();
  EXPECT_EQ(calls.load(), 0);  // still running

  ASSERT_TRUE(go.write("x"));
  ASSERT_EQ(exited.get_future().wait_for(5s), std::future_status::ready);
  int status = 0;
  ASSERT_EQ(::waitpid(child.pid, &status, 0), child.pid);
  child.pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  running.sync();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_TRUE(isOpen(pidfd));
}

TEST(AsioEventLoopTest, DestructionDropsPendingTimersAndReleasesWatchedFds) {
  Pipe pipe;
  auto token = std::make_shared<int>(0);  // held by the pending callbacks
  {
    RunningLoop running;
    EventLoop& loop = running.loop();
    running.start();
    running.onLoop([&] {
      loop.startTimer(1h, [token] {});
      EXPECT_TRUE(loop.watchReadable(pipe.readEnd(), [token] {}));
    });
    EXPECT_EQ(token.use_count(), 3);
  }
  EXPECT_EQ(token.use_count(), 1);  // both callbacks destroyed, never run
  ASSERT_TRUE(isOpen(pipe.readEnd()));
  EXPECT_TRUE(pipe.write("still a pipe"));
  EXPECT_EQ(pipe.readAvailable(), "still a pipe");
}

TEST(AsioEventLoopTest, PostRunAfterAndSignalsRunOnTheLoopThread) {
  RunningLoop running;
  AsioEventLoop& loop = running.loop();
  running.start();
  const auto loop_id = running.onLoop([] { return std::this_thread::get_id(); });
  EXPECT_NE(loop_id, std::this_thread::get_id());

  std::promise<Clock::duration> timer;
  const auto armed = Clock::now();
  loop.runAfter(100ms, [&] { timer.set_value(Clock::now() - armed); });
  auto timer_future = timer.get_future();
  ASSERT_EQ(timer_future.wait_for(5s), std::future_status::ready);
  EXPECT_GE(timer_future.get(), 100ms);

  // Delivered twice: the handler is re-armed after each delivery.
  std::promise<std::thread::id> signalled[2];
  int deliveries = 0;  // touched on the loop thread only
  running.onLoop([&] {
    loop.addSignalHandler(SIGUSR1, [&] {
      if (deliveries < 2) signalled[deliveries++].set_value(std::this_thread::get_id());
    });
  });
  for (auto& promise : signalled) {
    ::kill(::getpid(), SIGUSR1);
    auto f = promise.get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(f.get(), loop_id);
  }
}

TEST(AsioEventLoopTest, ThrowingCallbacksAreLoggedAndTheLoopGoesOn) {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)));
  {
    RunningLoop running;
    AsioEventLoop& loop = running.loop();
    running.start();
    loop.post([] { throw std::runtime_error("posted boom"); });
    std::promise<void> fired;
    running.onLoop([&] {
      loop.startTimer(0ms, [] { throw std::runtime_error("timer boom"); });
      loop.startTimer(20ms, [&] { fired.set_value(); });  // after the throwing one
    });
    ASSERT_EQ(fired.get_future().wait_for(5s), std::future_status::ready);
    EXPECT_EQ(running.onLoop([] { return 42; }), 42);
  }  // joins the loop thread: the lines have been written
  spdlog::set_default_logger(previous);
  const auto log = captured.str();
  EXPECT_NE(log.find("loop.callback.failed kind=post error=posted boom"), std::string::npos) << log;
  EXPECT_NE(log.find("loop.callback.failed kind=timer error=timer boom"), std::string::npos) << log;
}

TEST(AsioEventLoopTest, StopMakesRunReturnWithWorkPending) {
  RunningLoop running;
  AsioEventLoop& loop = running.loop();
  std::atomic<bool> fired{false};
  loop.startTimer(1h, [&] { fired = true; });  // before run(): allowed
  loop.addSignalHandler(SIGUSR2, [] {});
  running.start();
  running.sync();
  loop.stop();
  EXPECT_TRUE(running.waitStopped(5s));
  EXPECT_FALSE(fired.load());
}

TEST(AsioEventLoopTest, StopBeforeRunMakesRunReturnAtOnce) {
  RunningLoop running;
  running.loop().stop();
  running.start();
  EXPECT_TRUE(running.waitStopped(5s));
}

}  // namespace
}  // namespace phonefarm::os
