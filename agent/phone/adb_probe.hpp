// AdbProbe: the adb server's state for GET /debug — `host:version` and
// `host:devices-l` through the AdbHost, each bounded by a short deadline —
// asked on a worker thread of its own (pf-adb-probe), because the I/O thread
// must never wait on the adb server. Requests that arrive while a probe runs
// share the next one. The owner destroys it before the AdbHost and before
// whatever `done` posts to (the daemon declares it after both); the
// destructor joins.
#pragma once

#include <boost/json/object.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/phone/adb_host.hpp"

namespace phonefarm::phone {

class AdbProbe {
 public:
  using Done = std::function<void(boost::json::object)>;

  AdbProbe(const AdbHost& adb, std::chrono::milliseconds timeout) : adb_(adb), timeout_(timeout) {}
  ~AdbProbe();
  AdbProbe(const AdbProbe&) = delete;
  AdbProbe& operator=(const AdbProbe&) = delete;

  // Calls `done` on the worker thread with {"server", "up", "version",
  // "devices": [{serial, state, properties}]} or "error" when the server
  // does not answer in time.
  void probe(Done done);

  // One probe on the calling thread (what the worker runs).
  boost::json::object probeNow() const;

 private:
  void work();

  const AdbHost& adb_;
  const std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Done> waiting_;
  bool stopping_ = false;
  std::thread worker_;  // started by the first probe
};

}  // namespace phonefarm::phone
