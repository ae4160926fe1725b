// DeviceTracker: keeps one host:track-devices-l subscription to the adb server
// open on its own thread, so the agent learns of every phone that appears,
// disappears or changes state (device/offline/unauthorized...) as it happens
// instead of polling. When the stream breaks (the server died or was never
// running) it says so once, then re-subscribes with exponential back-off,
// starting the server itself when nothing listens on its port.
//
// Before each subscription it asks the server's host:version on a connection
// of its own, which tells two more faults apart from a dead server: a server
// of another adb version than the agent's own adb (kForeignVersion: left
// running and followed by default — the host protocol is the same, and
// other adb users on the host kill servers of another version, so replacing
// it would start a fight — or replaced with `replace_foreign_server`), and a
// program that is not an adb server holding the port (kPortHog: retried with
// the same exponential back-off, never started over). serverState() says
// which, for GET /readyz and the metrics.
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
#include "common/result.hpp"

namespace phonefarm::phone {

// What holds the adb server's port, beyond up or down.
enum class AdbServerFault {
  kNone,
  kForeignVersion,  // an adb server of another version than the agent's adb
  kPortHog,         // a listener that does not answer host:version like an adb server
};
// "foreign_version", "port_hog" (docs/api.md), "" for kNone.
const char* adbServerFaultName(AdbServerFault fault);

struct AdbServerState {
  AdbServerFault fault = AdbServerFault::kNone;
  std::string detail;            // the fault in words for an operator ("" for kNone)
  std::string server_version;    // the last valid host:version answer, 4 hex digits ("" = none yet)
  std::string expected_version;  // the agent's adb's ("" = not known)
};

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
  // The host:version of the agent's own adb. "" = ask adb_path once
  // (adbBinaryVersion) when the thread starts, or, if that fails, take the
  // version of the first server the tracker starts itself.
  std::string expected_version;
  // A server of another version on the port: false = leave it running (and
  // follow it); true = stop it (host:kill) and start the agent's own.
  bool replace_foreign_server = false;
};

struct DeviceTrackerStats {
  std::uint64_t subscriptions = 0;          // OKAY answers to host:track-devices-l
  std::uint64_t updates = 0;                // lists delivered to on_update
  std::uint64_t disconnects = 0;            // on_lost calls (one per outage)
  std::uint64_t server_starts = 0;          // startAdbServer successes
  std::uint64_t server_start_failures = 0;  // and failures (not counting stop())
  std::uint64_t server_replacements = 0;    // foreign servers stopped and replaced by the agent's own
  std::uint64_t server_replace_failures = 0;
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
  AdbServerState serverState() const;

 private:
  // What answered host:version on the port.
  enum class Found { kOurs, kForeign, kRefused, kUnreachable, kHog };
  struct ServerCheck {
    Found found = Found::kUnreachable;
    std::string version;  // kOurs, kForeign
    std::string error;    // kRefused, kUnreachable, kHog
  };

  void run();
  void learnExpectedVersion();
  // host:version on a connection of its own. `started_here`: the tracker has
  // just started this server, whose version becomes the expected one if
  // that is not known yet.
  ServerCheck checkServer(bool started_here);
  Status startServer();
  // host:kill to the foreign server, wait for its port to close, startServer.
  Status replaceServer(const std::string& foreign_version);
  // Records what the check found as the server's state; logs the changes.
  void noteServer(const ServerCheck& check, const std::string& replace_error);
  std::string expectedVersion() const;
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

  mutable std::mutex stats_mutex_;  // stats_, state_
  DeviceTrackerStats stats_;
  AdbServerState state_;
};

}  // namespace phonefarm::phone
