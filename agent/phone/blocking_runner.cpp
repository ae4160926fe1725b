// ThreadPerJob and WorkerThread; see blocking_runner.hpp.
#include "agent/phone/blocking_runner.hpp"

#include "common/os/thread_name.hpp"

namespace phonefarm::phone {

ThreadPerJob::~ThreadPerJob() {
  std::vector<Worker> workers;
  {
    std::lock_guard lock(mutex_);
    workers.swap(workers_);
  }
  for (auto& w : workers) {
    if (w.thread.joinable()) w.thread.join();
  }
}

void ThreadPerJob::run(std::function<void()> job) {
  std::lock_guard lock(mutex_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  workers_.push_back(Worker{std::thread([name = thread_name_, job = std::move(job), done] {
                              os::setCurrentThreadName(name);
                              job();
                              done->store(true);
                            }),
                            done});
}

std::size_t ThreadPerJob::threads() const {
  std::lock_guard lock(mutex_);
  return workers_.size();
}

WorkerThread::~WorkerThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WorkerThread::run(std::function<void()> job) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  jobs_.push_back(std::move(job));
  if (!thread_.joinable()) thread_ = std::thread([this] { work(); });
  wake_.notify_one();
}

void WorkerThread::work() {
  os::setCurrentThreadName(thread_name_);
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

}  // namespace phonefarm::phone
