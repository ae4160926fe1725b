// DeviceReconciler: a slow, bounded re-read of `host:devices-l` next to the
// track-devices stream. adb 29 does not report every transition on that
// stream — a network (TCP) device whose connection drops turns `offline` in
// `adb devices` without any track-devices update — so a phone unplugged from
// the network would otherwise look usable forever. Every `interval` the full
// list is read (one short request to the local adb server) and applied like a
// stream update.
//
// It also brings network phones back: adb forgets a TCP device when its
// server restarts, and does not re-dial one it was told to disconnect, so a
// configured `host:port` phone the server does not list is `connect`ed again
// (at most once per `reconnect_every` per phone).
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/phone/adb_client.hpp"

namespace phonefarm::phone {

class DeviceReconciler {
 public:
  DeviceReconciler(const AdbClient& adb, std::chrono::milliseconds interval,
                   std::function<void(std::vector<AdbDevice>)> on_list, std::vector<std::string> network_serials = {},
                   std::chrono::milliseconds reconnect_every = std::chrono::seconds(10))
      : adb_(adb),
        interval_(interval),
        on_list_(std::move(on_list)),
        network_serials_(std::move(network_serials)),
        reconnect_every_(reconnect_every) {}
  ~DeviceReconciler() { stop(); }
  DeviceReconciler(const DeviceReconciler&) = delete;
  DeviceReconciler& operator=(const DeviceReconciler&) = delete;

  void start() {
    thread_ = std::thread([this] {
      std::unique_lock lock(mutex_);
      while (!cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
        lock.unlock();
        // A server that is down is the tracker's business: skip this round.
        if (auto list = adb_.devices(std::min(interval_, std::chrono::milliseconds(2000)))) {
          reconnectMissing(*list);
          on_list_(std::move(*list));
        }
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
  void reconnectMissing(const std::vector<AdbDevice>& devices) {
    const auto now = std::chrono::steady_clock::now();
    for (const auto& serial : network_serials_) {
      bool listed = false;
      for (const auto& d : devices) listed = listed || d.serial == serial;
      if (listed) continue;
      auto& last = last_attempt_[serial];
      if (last != std::chrono::steady_clock::time_point{} && now - last < reconnect_every_) continue;
      last = now;
      auto r = adb_.connect(serial, std::chrono::milliseconds(3000));
      if (r) {
        spdlog::info("phone.adb_connect serial={} result=\"{}\"", serial, *r);
      } else {
        spdlog::warn("phone.adb_connect_failed serial={} error=\"{}\"", serial, r.error().message);
      }
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
      }
    }
  }

  const AdbClient& adb_;
  std::chrono::milliseconds interval_;
  std::function<void(std::vector<AdbDevice>)> on_list_;
  std::vector<std::string> network_serials_;
  std::chrono::milliseconds reconnect_every_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_attempt_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace phonefarm::phone
