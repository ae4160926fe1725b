// ResetService: the ADB/USB session reset ladder (docs/design.md). A forced kill
// (hard cancel, escalation, timeout) or a technician's POST
// /phones/{id}/reset starts one; each step runs only while the phone is not
// back in `device` state, with its own timeout, and is stored with its times,
// outcome and detail:
//   1. adb_reconnect — USB phones: the server's `reconnect` on the phone's
//      transport; network phones (serial host:port): disconnect + connect
//      (adb does not reconnect TCP devices by itself).
//   2. usb_reset — libusb reset of the device matched by serial or usb_port
//      (skipped for network phones, when disabled or not found).
//   3. hub_power_cycle — opt-in, per-port power off/on on the parent hub.
// While a reset runs the phone takes no new work; success -> ready, all steps
// failed -> needs_attention (kept across restarts) until a reset succeeds.
// Resets of different phones run in parallel (a worker thread each); a
// request for a phone already resetting joins the running reset.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/exec/executor.hpp"
#include "agent/phone/adb_client.hpp"
#include "agent/phone/inventory.hpp"
#include "agent/phone/usb_backend.hpp"
#include "common/clock.hpp"
#include "common/config/config.hpp"
#include "common/metrics/metrics.hpp"
#include "common/store/phone_repository.hpp"
#include "common/store/store.hpp"

namespace phonefarm::phone {

struct ResetStats {
  std::uint64_t started = 0;
  std::uint64_t joined = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
};

class ResetService final : public exec::PhoneResetRequester {
 public:
  // `phone_changed` is called (from a worker thread) when a reset ends: the
  // phone may take work again. It must be thread-safe (post to the loop).
  ResetService(const AgentConfig& config, store::Store& store, const Clock& clock, Inventory& inventory, AdbClient& adb,
               UsbBackend& usb, std::function<void(const std::string&)> phone_changed);
  ~ResetService() override;  // interrupts the waits and joins the workers
  ResetService(const ResetService&) = delete;
  ResetService& operator=(const ResetService&) = delete;

  // Restores needs_attention from the store; call once before work starts.
  void restoreHealth();

  // Forced kills: nullopt when [reset] on_forced_cancel = false or the phone is unknown.
  std::optional<boost::json::object> requestReset(const std::string& phone_id, const std::string& trigger) override;

  // A technician's request; `done` gets the record once it is stored (the
  // running one when joined). kNotFound for an unknown phone. Thread-safe.
  void technicianReset(const std::string& phone_id, std::string reason, boost::json::object requested_by,
                       std::function<void(Result<store::ResetRecord>)> done);

  bool resetting(const std::string& phone_id) const;
  ResetStats stats() const;
  // Records each step's duration by step and outcome in `registry` (which
  // must outlive the service). Call before the first reset.
  void recordStepsIn(metrics::Registry& registry) { metrics_ = &registry; }
  // Worker threads not yet joined (finished ones are joined at the next reset).
  std::size_t workerThreads() const;

 private:
  struct Running {
    store::ResetRecord record;
  };
  // Creates the record and starts the worker; the running record if joined.
  std::pair<store::ResetRecord, bool> begin(const std::string& phone_id, const std::string& trigger,
                                            std::optional<std::string> reason, boost::json::object requested_by);
  void run(store::ResetRecord record);
  void save(const store::ResetRecord& record, std::optional<std::string> health = std::nullopt);

  const AgentConfig& config_;
  store::Store& store_;
  const Clock& clock_;
  Inventory& inventory_;
  AdbClient& adb_;
  UsbBackend& usb_;
  std::function<void(const std::string&)> phone_changed_;

  mutable std::mutex mutex_;
  std::map<std::string, store::ResetRecord> running_;  // by phone id
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers_;  // finished ones are joined at the next begin()
  ResetStats stats_;
  metrics::Registry* metrics_ = nullptr;
  std::atomic<bool> stopping_{false};
};

}  // namespace phonefarm::phone
