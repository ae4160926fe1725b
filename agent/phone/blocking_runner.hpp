// BlockingRunner: where phone/ runs the calls that block — the adb host
// protocol, libusb — so that the event loop never waits on a phone. The
// classes that use it (ResetService, DeviceReconciler) hand it a job that
// makes the calls and posts the outcome back to the loop; timeouts between
// the calls are the loop's timers. Production runs the jobs on named threads
// (ThreadPerJob, WorkerThread); unit tests run them by hand
// (tests/fakes/fake_blocking_runner.hpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace phonefarm::phone {

class BlockingRunner {
 public:
  virtual ~BlockingRunner() = default;
  // Runs `job` on another thread, soon. Thread-safe.
  virtual void run(std::function<void()> job) = 0;
};

// Each job on a thread of its own named `thread_name`, so jobs run in parallel
// (resets of different phones). Threads of finished jobs are joined at the
// next run(), so a long-lived agent does not accumulate them; the destructor
// waits for the running ones.
class ThreadPerJob final : public BlockingRunner {
 public:
  explicit ThreadPerJob(std::string thread_name) : thread_name_(std::move(thread_name)) {}
  ~ThreadPerJob() override;
  ThreadPerJob(const ThreadPerJob&) = delete;
  ThreadPerJob& operator=(const ThreadPerJob&) = delete;

  void run(std::function<void()> job) override;
  // Threads not joined yet (running, or finished since the last run()).
  std::size_t threads() const;

 private:
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  const std::string thread_name_;
  mutable std::mutex mutex_;
  std::vector<Worker> workers_;
};

// One thread named `thread_name` that runs the jobs in order, started by the
// first run(). The destructor lets the running job finish, drops the queued
// ones and joins.
class WorkerThread final : public BlockingRunner {
 public:
  explicit WorkerThread(std::string thread_name) : thread_name_(std::move(thread_name)) {}
  ~WorkerThread() override;
  WorkerThread(const WorkerThread&) = delete;
  WorkerThread& operator=(const WorkerThread&) = delete;

  void run(std::function<void()> job) override;

 private:
  void work();

  const std::string thread_name_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace phonefarm::phone
