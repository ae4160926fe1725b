// HealService: the rack heals itself ([heal], README "Self-healing"). It
// watches every configured phone through the Inventory and acts through the
// ResetService, so that a phone that drops on its own is not left waiting for
// a technician:
//   - a phone out of `device` state for heal.after_seconds while no item runs
//     on it gets the reset ladder with trigger `auto`; a failed heal is tried
//     again after 1 min, 2 min, 4 min ... up to heal.backoff_max_seconds, and
//     the back-off starts over once the phone is back;
//   - `unauthorized` is not reset (a person must accept the USB debugging
//     prompt): the phone needs attention, reason `unauthorized`, also when a
//     reset of it failed meanwhile or its hub was blamed — only a flap
//     quarantine keeps its reason `flapping` (a technician's reset lifts it);
//   - an idle phone in `device` state gets `shell:echo` every
//     heal.probe_interval_seconds; one whose adbd does not answer is healed at
//     once, like a dropped one; while a probe is in flight no item starts
//     on the phone (Inventory::canStart), it starts once the probe ended;
//   - a phone that drops heal.flap_count times within heal.flap_window_seconds
//     is quarantined (attention `flapping`, takes no work) until a
//     technician's reset succeeds.
//   - phones whose usb_port shares a parent port path belong to one hub; two
//     or more of them dropping within heal.hub_window_seconds are one hub
//     event, which power-cycles the hub's upstream port once — when
//     reset.hub_power_cycle allows it, no phone of the hub runs an item and
//     the hub's own back-off allows it; otherwise each phone is healed alone.
//     While that power cycle runs, and for reset.usb_reset_timeout_seconds
//     after it worked (the wait the ladder gives a phone after its own power
//     cycle), the hub's phones get no ladder of their own nor a probe, and
//     their drops are not counted. When that power cycle fails, or the back-off after a
//     failed one holds off the next, each phone is healed on its own and the
//     hub's phones still down need attention `hub`.
// A phone whose item runs is neither probed nor healed: it is looked at again
// when the item ends. Drops while the adb server itself is down, or while a
// reset runs, are not the phone's fault and are not counted.
//
// Threading: everything runs on the event loop thread; the probes' adb calls
// run on the BlockingRunner (real: one pf-heal-probe thread) and post their
// outcome back. Waits are loop timers, durations come from the Clock, so unit
// tests drive it with FakeLoop/FakeClock and a FakeAdbHost.
#pragma once

#include <atomic>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/phone/adb_host.hpp"
#include "agent/phone/blocking_runner.hpp"
#include "agent/phone/inventory.hpp"
#include "agent/phone/reset_service.hpp"
#include "agent/phone/usb_backend.hpp"
#include "common/clock.hpp"
#include "common/config/config.hpp"
#include "common/os/event_loop.hpp"

namespace phonefarm::phone {

// Counters for /metrics (phonefarm_heal_*).
struct HealStats {
  std::uint64_t drops = 0;           // a phone left `device` on its own
  std::uint64_t attempts = 0;        // auto ladders started
  std::uint64_t healed = 0;          // ... that brought the phone back
  std::uint64_t failed = 0;          // ... that did not
  std::uint64_t probes = 0;          // liveness probes answered or failed
  std::uint64_t probe_failures = 0;  // adbd did not answer
  std::uint64_t quarantines = 0;     // flapping phones set aside
  std::uint64_t unauthorized = 0;    // phones that need their prompt accepted
  std::uint64_t hub_events = 0;      // phones of one hub dropped together
  std::uint64_t hub_power_cycles = 0;
  std::uint64_t hub_power_cycle_failures = 0;
};

// The hub of a phone: the parent of its usb_port ("1-1.4" -> "1-1"; a phone
// on a root hub port, "1-4", -> "usb1"); none without a usb_port.
std::optional<std::string> hubOf(const PhoneConfig& phone);

class HealService {
 public:
  // The probe's command and the deadline of its answer.
  static constexpr const char* kProbeCommand = "echo phonefarm-probe";
  static constexpr std::chrono::milliseconds kProbeTimeout{3000};
  // The first back-off after a failed heal; it doubles with each failure.
  static constexpr std::chrono::seconds kFirstBackoff{60};

  // `busy` says whether an item runs on the phone now; `phone_changed`
  // announces a phone that may take work again (its attention cleared, its probe ended).
  // `prober` null: a WorkerThread named pf-heal-probe.
  HealService(const AgentConfig& config, const Clock& clock, os::EventLoop& loop, Inventory& inventory,
              ResetService& resets, const AdbHost& adb, std::function<bool(const std::string&)> busy,
              std::function<void(const std::string&)> phone_changed, UsbBackend* usb = nullptr,
              std::unique_ptr<BlockingRunner> prober = nullptr);
  ~HealService() { stop(); }
  HealService(const HealService&) = delete;
  HealService& operator=(const HealService&) = delete;

  // Looks at every phone and arms the probe rounds. Loop thread.
  void start();
  // No probe starts after this; waits for the one running. Call once the loop
  // no longer runs, or on its thread. Idempotent.
  void stop();

  // The Inventory took a new state for the phone. Loop thread.
  void phoneStateChanged(const std::string& phone_id);
  // The phone's item ended: a drop seen meanwhile is healed now. Loop thread.
  void itemEnded(const std::string& phone_id);
  // A reset ladder of the phone ended (ResetService::onResetEnded). Loop thread.
  void resetEnded(const std::string& phone_id, const std::string& trigger, bool ok);

  // The wait before the next heal of a phone whose last `failures` heals failed.
  std::chrono::seconds backoffAfter(int failures) const;
  const HealStats& stats() const { return stats_; }
  // GET /hubs: [{hub_id, phones, state, last_event}]. Loop thread.
  boost::json::array hubsJson() const;

 private:
  struct Track {
    std::string state;                         // the reported state last looked at
    std::optional<std::int64_t> out_since_ns;  // Clock::bootNowNs when it left `device`
    os::EventLoop::Id timer = 0;               // the heal's due time
    int failures = 0;                          // auto heals that failed since it was last back
    std::int64_t retry_at_ns = 0;              // back-off: no auto heal before
    std::deque<std::int64_t> drops_ns;         // within flap_window
    std::optional<WallMs> last_drop_at;
    bool probing = false;
    std::optional<std::string> probe_failed;  // why; the server still lists it as `device`
  };

  struct Hub {
    std::vector<std::string> phones;                   // config order
    std::map<std::string, std::int64_t> last_drop_ns;  // by phone
    std::string state = "ok";                          // ok | power_cycling | power_cycle_failed
    std::optional<std::int64_t> last_event_ns;
    boost::json::object last_event;  // {at, phones, action, detail}
    int failures = 0;
    std::int64_t retry_at_ns = 0;
    // After a power cycle that worked: its phones' own heals wait until then
    // (they re-enumerate meanwhile), and their drops until then are not counted.
    std::int64_t hold_until_ns = 0;
  };

  void look(const std::string& phone_id);
  // The hub of a configured phone, if it has one.
  const Hub* hubOfPhone(const std::string& phone_id) const;
  // The hub's power cycle runs, or its phones are still given the time to
  // come back after it: what they do now is the hub's doing.
  bool hubCycling(const Hub* hub) const;
  void hubDrop(const std::string& phone_id);
  void hubCycled(const std::string& hub_id, const Status& result);
  // The hub's phones that are still down need a technician at the hub
  // (attention `hub`, the detail `why` and what to do); cleared when the
  // phone is back or a reset of it succeeds.
  void needsTechnicianAtHub(const std::string& hub_id, const Hub& hub, const std::string& why);
  void arm(const std::string& phone_id, Track& t, std::int64_t due_ns);
  void disarm(Track& t);
  void heal(const std::string& phone_id, Track& t, const PhoneSnapshot& s);
  void drop(const std::string& phone_id, Track& t, const std::string& why);
  void pruneDrops(const std::string& phone_id, Track& t);
  void clearAttention(const std::string& phone_id, const char* reason);
  void probeRound();
  void probed(const std::string& phone_id, const Status& answer);

  const AgentConfig& config_;
  const HealConfig& heal_;
  const Clock& clock_;
  os::EventLoop& loop_;
  Inventory& inventory_;
  ResetService& resets_;
  const AdbHost& adb_;
  std::function<bool(const std::string&)> busy_;
  std::function<void(const std::string&)> phone_changed_;
  UsbBackend* usb_;
  std::map<std::string, Track> tracks_;  // by phone id
  std::map<std::string, Hub> hubs_;      // by hub id
  HealStats stats_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<BlockingRunner> prober_;  // last: destroyed (joined) first
};

}  // namespace phonefarm::phone
