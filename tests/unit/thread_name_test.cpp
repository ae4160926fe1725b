// os::setCurrentThreadName, currentThreadName and listThreads (what GET /debug
// shows), on real threads of this test process. Threads wait on futures with
// deadlines, never sleep.
#include "common/os/thread_name.hpp"

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <string>
#include <thread>

namespace phonefarm::os {
namespace {

using namespace std::chrono_literals;

long currentTid() { return static_cast<long>(::syscall(SYS_gettid)); }

TEST(ThreadNameTest, ANamedThreadIsListedByTidWithItsNameCutTo15Characters) {
  std::promise<long> named;
  std::promise<void> release;
  auto released = release.get_future();
  std::thread thread([&] {
    setCurrentThreadName("pf-a-name-longer-than-15");
    named.set_value(currentTid());
    released.wait_for(10s);
  });
  auto named_future = named.get_future();
  ASSERT_EQ(named_future.wait_for(5s), std::future_status::ready);
  const long tid = named_future.get();
  const auto threads = listThreads();
  release.set_value();
  thread.join();

  ASSERT_TRUE(std::is_sorted(threads.begin(), threads.end(),
                             [](const ThreadInfo& a, const ThreadInfo& b) { return a.tid < b.tid; }));
  const auto it = std::find_if(threads.begin(), threads.end(), [tid](const ThreadInfo& t) { return t.tid == tid; });
  ASSERT_NE(it, threads.end());
  EXPECT_EQ(it->name, "pf-a-name-longe");
  EXPECT_TRUE(std::any_of(threads.begin(), threads.end(), [](const ThreadInfo& t) { return t.tid == ::getpid(); }));
}

// setupLogging names spdlog's flusher this way: a new thread starts with its
// creator's name.
TEST(ThreadNameTest, ANewThreadStartsWithItsCreatorsName) {
  const std::string before = currentThreadName();
  setCurrentThreadName("pf-creator");
  EXPECT_EQ(currentThreadName(), "pf-creator");
  std::string inherited;
  std::thread([&] { inherited = currentThreadName(); }).join();
  setCurrentThreadName(before);
  EXPECT_EQ(inherited, "pf-creator");
  EXPECT_EQ(currentThreadName(), before);
}

}  // namespace
}  // namespace phonefarm::os
