// DeviceTracker: keeps one host:track-devices-l subscription to the adb server
// open on its own thread, so the agent learns of every phone that appears,
// disappears or changes state (device/offline/unauthorized...) as it happens
// instead of polling. When the stream breaks (the server died or was never
// running) it says so once, then re-subscribes with exponential back-off,
// starting the server itself when nothing listens on its port.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/phone/adb_host_connection.hpp"

namespace phonefarm::phone {

struct DeviceTrackerOptions {
  AdbEndpoint endpoint;
  std::string adb_path = "/usr/bin/adb";
  std::chrono::milliseconds min_backoff{100}, max_backoff{5000};
  bool start_server = true;  // start the server when it is not running
  // For startAdbServer: "K=V" entries over the agent's environment (HOME, where
  // adb keeps its key pair, for one).
  std::vector<std::string> adb_env;
  // Budget for connecting + subscribing, and for the rest of a list once its
  // first byte has arrived (between lists the stream may idle forever).
  std::chrono::milliseconds io_timeout{2000};
  std::chrono::milliseconds server_start_timeout{10000};
};

struct DeviceTrackerStats {
  std::uint64_t subscriptions = 0;          // OKAY answers to host:track-devices-l
  std::uint64_t updates = 0;                // lists delivered to on_update
  std::uint64_t disconnects = 0;            // on_lost calls (one per outage)
  std::uint64_t server_starts = 0;          // startAdbServer successes
  std::uint64_t server_start_failures = 0;  // and failures (not counting stop())
};

class DeviceTracker {
 public:
  // on_update gets every list the server sends, complete (the first one right
  // after each subscription). on_lost gets the reason once per outage: when a
  // subscription breaks, or when the first attempt after start() fails. Both
  // run on the tracker's thread, never concurrently; they must not call stop().
  DeviceTracker(DeviceTrackerOptions options, std::function<void(std::vector<AdbDevice>)> on_update,
                std::function<void(std::string)> on_lost);
  ~DeviceTracker();  // stop()
  DeviceTracker(const DeviceTracker&) = delete;
  DeviceTracker& operator=(const DeviceTracker&) = delete;

  // Starts the thread; no-op while it runs. Throws std::system_error if the
  // thread cannot be created.
  void start();
  // Wakes the thread out of any wait (socket read, back-off, server start, in
  // which case the `adb start-server` child is killed) and joins it. Idempotent.
  void stop();
  DeviceTrackerStats stats() const;

 private:
  void run();
  // Reads lists until the stream breaks; returns why it did.
  std::string follow(AdbHostConnection& connection, std::chrono::milliseconds& backoff);
  void sleepFor(std::chrono::milliseconds delay) const;
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  const DeviceTrackerOptions options_;
  const std::function<void(std::vector<AdbDevice>)> on_update_;
  const std::function<void(std::string)> on_lost_;
  const std::string where_;

  int wake_fd_ = -1;  // eventfd, readable once stop() wants the thread out
  std::atomic<bool> stopping_{false};
  std::mutex lifecycle_mutex_;  // start() / stop()
  std::thread thread_;

  mutable std::mutex stats_mutex_;
  DeviceTrackerStats stats_;
};

}  // namespace phonefarm::phone
