// Inventory: what the agent knows about each phone of its rack, at every
// moment — the adb server's view of the device (fed by the DeviceTracker),
// whether a reset runs, whether it needs a technician — and the devices the
// server reports that no [[phones]] entry names. Thread-safe: the tracker's
// thread updates it, the event loop and the reset steps read it. Nothing
// waits on it: who updates it tells the ResetService (phoneStateChanged).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/phone/adb_device.hpp"
#include "common/clock.hpp"
#include "common/config/config.hpp"

namespace phonefarm::phone {

// docs/api.md adb_state / health values.
inline constexpr const char* kStateDevice = "device";
inline constexpr const char* kStateOffline = "offline";
inline constexpr const char* kStateUnauthorized = "unauthorized";
inline constexpr const char* kStateAbsent = "absent";
inline constexpr const char* kStateResetting = "resetting";

inline constexpr const char* kHealthReady = "ready";
inline constexpr const char* kHealthBusy = "busy";
inline constexpr const char* kHealthResetting = "resetting";
inline constexpr const char* kHealthNeedsAttention = "needs_attention";

// docs/api.md `attention` reasons.
inline constexpr const char* kAttentionUnauthorized = "unauthorized";
inline constexpr const char* kAttentionFlapping = "flapping";
inline constexpr const char* kAttentionResetFailed = "reset_failed";
inline constexpr const char* kAttentionHub = "hub";

// Why a phone needs a technician (docs/api.md `attention`).
struct Attention {
  std::string reason;  // kAttention*
  std::string detail;  // words for a technician
  WallMs since = 0;
};

struct PhoneSnapshot {
  PhoneConfig config;
  std::string adb_state;       // as docs/api.md: resetting while a reset runs
  std::string reported_state;  // what the adb server says (absent when it does not list the device)
  bool resetting = false;
  bool probing = false;                // a liveness probe (HealService) is in flight: no item starts
  bool needs_attention = false;        // attention is set
  std::optional<Attention> attention;  // why it needs a technician
  // Drops (left `device` on its own) within [heal] flap_window, and the last one.
  int drops = 0;
  std::optional<WallMs> last_drop_at;
  std::uint64_t generation = 0;  // bumps whenever the server's reported state of this phone changes
};

// docs/api.md `health` of a phone; `busy` = an item of it is executing.
inline const char* healthOf(const PhoneSnapshot& s, bool busy) {
  if (s.needs_attention) return kHealthNeedsAttention;
  if (s.resetting) return kHealthResetting;
  return busy ? kHealthBusy : kHealthReady;
}

class Inventory {
 public:
  explicit Inventory(std::vector<PhoneConfig> phones);

  // A full device list from the adb server. Returns the ids of phones whose
  // reported state changed.
  std::vector<std::string> update(const std::vector<AdbDevice>& devices);
  // The adb server went away: nothing is known to be attached.
  std::vector<std::string> serverLost();

  std::optional<PhoneSnapshot> phone(const std::string& phone_id) const;
  std::vector<PhoneSnapshot> phones() const;
  std::vector<AdbDevice> unassigned() const;
  bool serverUp() const;

  // Whether new work may start on the phone: never while resetting, needing
  // attention or being probed; with wait_for_device only in `device` state.
  bool canStart(const std::string& phone_id, bool wait_for_device) const;

  void setResetting(const std::string& phone_id, bool resetting);
  // A liveness probe of the phone starts or ends; whoever clears it announces
  // the phone, so that an item held off meanwhile starts.
  void setProbing(const std::string& phone_id, bool probing);
  // Sets (or clears, with nullopt) why the phone needs a technician; while
  // set, it takes no work. A change is passed to the observer (below).
  void setAttention(const std::string& phone_id, std::optional<Attention> attention);
  // Called (outside the lock, on the setter's thread) with every change of a
  // phone's attention: the daemon stores it, so it survives a restart. Set it
  // once, before anyone calls setAttention concurrently.
  void onAttentionChanged(std::function<void(const PhoneConfig&, const std::optional<Attention>&)> observer) {
    attention_observer_ = std::move(observer);
  }
  void setDrops(const std::string& phone_id, int drops, std::optional<WallMs> last_drop_at);

  // Whether the phone's reported state has changed since `after_generation`
  // (read before kicking its transport, so a stale `device` does not count)
  // and is `device`: what a reset step waits for.
  bool backInDevice(const std::string& phone_id, std::uint64_t after_generation) const;

 private:
  // The device entry that is this phone: same serial, or (USB) same bus-port path.
  const AdbDevice* match(const PhoneConfig& phone, const std::vector<AdbDevice>& devices) const;
  std::string stateOf(const PhoneSnapshot& s) const;

  mutable std::mutex mutex_;
  std::map<std::string, PhoneSnapshot> phones_;  // by id, config order kept in order_
  std::vector<std::string> order_;
  std::vector<AdbDevice> unassigned_;
  bool server_up_ = false;
  std::function<void(const PhoneConfig&, const std::optional<Attention>&)> attention_observer_;
};

}  // namespace phonefarm::phone
