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
// (at most once per `reconnect_every` per phone, measured on the Clock).
//
// The interval is a timer on the event loop; a round's adb calls run on the
// BlockingRunner (real: one thread, pf-adb-sync), and the next interval starts
// when the round has ended. `on_list` runs on that worker.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/phone/adb_host.hpp"
#include "agent/phone/blocking_runner.hpp"
#include "common/clock.hpp"
#include "common/os/event_loop.hpp"

namespace phonefarm::phone {

class DeviceReconciler {
 public:
  // `worker` null: a WorkerThread named pf-adb-sync.
  DeviceReconciler(os::EventLoop& loop, const Clock& clock, const AdbHost& adb, std::chrono::milliseconds interval,
                   std::function<void(std::vector<AdbDevice>)> on_list, std::vector<std::string> network_serials = {},
                   std::chrono::milliseconds reconnect_every = std::chrono::seconds(10),
                   std::unique_ptr<BlockingRunner> worker = nullptr);
  ~DeviceReconciler() { stop(); }
  DeviceReconciler(const DeviceReconciler&) = delete;
  DeviceReconciler& operator=(const DeviceReconciler&) = delete;

  // Rounds are skipped while `paused` returns true (called on the worker):
  // the tracker's port-hog state, when only it should try the port. Call
  // before start().
  void pauseWhile(std::function<bool()> paused) { paused_ = std::move(paused); }
  // Arms the first interval (posted to the loop). Thread-safe.
  void start();
  // No round starts after this; waits for the one running. Call once the loop
  // no longer runs, or on its thread. Idempotent.
  void stop();

 private:
  void arm();    // loop thread
  void round();  // the worker
  void reconnectMissing(const std::vector<AdbDevice>& devices);

  os::EventLoop& loop_;
  const Clock& clock_;
  const AdbHost& adb_;
  const std::chrono::milliseconds interval_;
  const std::function<void(std::vector<AdbDevice>)> on_list_;
  const std::vector<std::string> network_serials_;
  const std::chrono::milliseconds reconnect_every_;
  std::function<bool()> paused_;
  std::map<std::string, std::int64_t> last_attempt_ns_;  // Clock::bootNowNs; the worker only
  std::atomic<bool> stopping_{false};
  std::unique_ptr<BlockingRunner> worker_;
};

}  // namespace phonefarm::phone
