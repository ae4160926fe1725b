// DeviceReconciler: a slow, bounded re-read of `host:devices-l` next to the
// track-devices stream. adb 29 does not report every transition on that
// stream — a network (TCP) device whose connection drops turns `offline` in
// `adb devices` without any track-devices update — so a phone unplugged from
// the network would otherwise look usable forever. Every `interval` the full
// list is read (one short request to the local adb server) and applied like a
// stream update.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/phone/adb_client.hpp"

namespace phonefarm::phone {

class DeviceReconciler {
 public:
  DeviceReconciler(const AdbClient& adb, std::chrono::milliseconds interval,
                   std::function<void(std::vector<AdbDevice>)> on_list)
      : adb_(adb), interval_(interval), on_list_(std::move(on_list)) {}
  ~DeviceReconciler() { stop(); }
  DeviceReconciler(const DeviceReconciler&) = delete;
  DeviceReconciler& operator=(const DeviceReconciler&) = delete;

  void start() {
    thread_ = std::thread([this] {
      std::unique_lock lock(mutex_);
      while (!cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
        lock.unlock();
        // A server that is down is the tracker's business: skip this round.
        if (auto list = adb_.devices(std::min(interval_, std::chrono::milliseconds(2000)))) on_list_(std::move(*list));
        lock.lock();
      }
    });
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  const AdbClient& adb_;
  std::chrono::milliseconds interval_;
  std::function<void(std::vector<AdbDevice>)> on_list_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace phonefarm::phone
