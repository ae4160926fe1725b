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
// Resets of different phones run in parallel; a request for a phone already
// resetting joins the running reset.
//
// Threading: the ladder is driven by the event loop. Each step's blocking
// calls (adb, libusb) run on the BlockingRunner (real: a `pf-reset` thread
// per step), which posts the outcome back; the wait for `device` that follows
// is a loop timer, cut short when phoneStateChanged() reports the phone back.
// Nothing here sleeps or reads real time: durations come from the Clock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/exec/phone_reset_requester.hpp"
#include "agent/phone/adb_host.hpp"
#include "agent/phone/blocking_runner.hpp"
#include "agent/phone/inventory.hpp"
#include "agent/phone/usb_backend.hpp"
#include "common/clock.hpp"
#include "common/config/config.hpp"
#include "common/metrics/metrics.hpp"
#include "common/os/event_loop.hpp"
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
  // `phone_changed` is called on the loop thread when a reset ends: the phone
  // may take work again. `workers` runs each step's blocking calls; null means
  // a ThreadPerJob named pf-reset.
  ResetService(const AgentConfig& config, store::Store& store, const Clock& clock, os::EventLoop& loop,
               Inventory& inventory, AdbHost& adb, UsbBackend& usb,
               std::function<void(const std::string&)> phone_changed,
               std::unique_ptr<BlockingRunner> workers = nullptr);
  // Waits for the running step calls. Destroy it once the loop no longer
  // runs (or on its thread): timers still armed are left to the loop.
  ~ResetService() override;
  ResetService(const ResetService&) = delete;
  ResetService& operator=(const ResetService&) = delete;

  // Restores needs_attention from the store; call once before work starts.
  void restoreHealth();

  // Forced kills: nullopt when [reset] on_forced_cancel = false or the phone
  // is unknown. On the loop thread.
  std::optional<boost::json::object> requestReset(const std::string& phone_id, const std::string& trigger) override;

  // The rack's self-healing (HealService): the ladder with `trigger` ("auto"),
  // whatever [reset] on_forced_cancel says; joins a running reset. kNotFound
  // for an unknown phone. On the loop thread.
  Result<store::ResetRecord> autoReset(const std::string& phone_id, const std::string& trigger, std::string reason);

  // Stores an automatic action that is not a ladder (a failed probe, a
  // quarantine, a hub event) in the phone's reset history, as a record with
  // `trigger`, status "recorded" and no steps. On the loop thread.
  void recordAction(const std::string& phone_id, const std::string& trigger, std::string reason,
                    boost::json::array steps = {});

  // `ended` runs on the loop thread each time a ladder ends: the phone, the
  // reset's trigger and whether it succeeded. Set once, before the first reset.
  void onResetEnded(std::function<void(const std::string& phone_id, const std::string& trigger, bool ok)> ended) {
    reset_ended_ = std::move(ended);
  }

  // A technician's request; `done` gets the record once it is stored (the
  // running one when joined). kNotFound for an unknown phone. On the loop
  // thread.
  void technicianReset(const std::string& phone_id, std::string reason, boost::json::object requested_by,
                       std::function<void(Result<store::ResetRecord>)> done);

  // The adb server's state of the phone changed (after the Inventory took the
  // update): a step waiting for `device` looks again. Thread-safe (posts to
  // the loop).
  void phoneStateChanged(const std::string& phone_id);

  bool resetting(const std::string& phone_id) const;
  ResetStats stats() const;
  // Records each step's duration by step and outcome in `registry` (which
  // must outlive the service). Call before the first reset.
  void recordStepsIn(metrics::Registry& registry) { metrics_ = &registry; }

 private:
  // What a step's blocking part found: the step's end (`wait_for_device` unset), or
  // the transport was kicked and the phone should come back within `timeout`.
  struct Kick {
    std::string status, detail;
    std::optional<std::chrono::seconds> wait_for_device;
    std::uint64_t before = 0;  // the phone's generation before the kick
  };
  // One running ladder; loop thread only.
  struct Ladder {
    store::ResetRecord record;
    PhoneConfig phone;
    std::size_t next_step = 0;
    bool ok = false;
    boost::json::object step;          // the step running
    std::int64_t step_started_ns = 0;  // Clock::bootNowNs
    std::optional<Kick> waiting;       // set while waiting for `device`
    os::EventLoop::Id timer = 0;
  };

  // Creates the record and starts the ladder; the running record if joined.
  std::pair<store::ResetRecord, bool> begin(const std::string& phone_id, const std::string& trigger,
                                            std::optional<std::string> reason, boost::json::object requested_by);
  void save(const store::ResetRecord& record, const std::optional<std::string>& health = std::nullopt);
  // Queues the insert of a new reset record; a failed commit is logged.
  void insertRecord(store::ResetRecord record);
  // The ladder's next step, or its end when none is left or one succeeded.
  void nextStep(const std::string& phone_id);
  // The blocking part of step `index` (on a worker thread).
  Kick kick(std::size_t index, const PhoneConfig& phone);
  void kicked(const std::string& phone_id, const std::string& reset_id, Kick kick);
  // The wait for `device` ends: the phone is back (checkBack, when it is) or
  // the step's timeout fired (notBack).
  void checkBack(const std::string& phone_id);
  void notBack(const std::string& phone_id, const std::string& reset_id, std::chrono::seconds timeout);
  void endStep(Ladder& ladder, const std::string& status, const std::string& detail);
  void finish(Ladder& ladder);

  const AgentConfig& config_;
  store::Store& store_;
  const Clock& clock_;
  os::EventLoop& loop_;
  Inventory& inventory_;
  AdbHost& adb_;
  UsbBackend& usb_;
  std::function<void(const std::string&)> phone_changed_;
  std::function<void(const std::string&, const std::string&, bool)> reset_ended_;

  mutable std::mutex mutex_;
  std::map<std::string, store::ResetRecord> running_;  // by phone id; also read off the loop
  ResetStats stats_;
  std::map<std::string, Ladder> ladders_;  // by phone id; loop thread only
  metrics::Registry* metrics_ = nullptr;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<BlockingRunner> workers_;  // last: destroyed (joined) first
};

}  // namespace phonefarm::phone
