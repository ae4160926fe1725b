// HealService; see heal_service.hpp. look() is the one place that decides what
// a phone needs; every event (a state change, an item's end, a reset's end, a
// timer, a probe's answer) updates the phone's Track and calls it.
#include "agent/phone/heal_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace phonefarm::phone {
namespace {

std::int64_t ns(std::chrono::seconds s) { return std::chrono::nanoseconds(s).count(); }

}  // namespace

std::optional<std::string> hubOf(const PhoneConfig& phone) {
  if (!phone.usb_port) return std::nullopt;
  const std::string& port = *phone.usb_port;
  const auto dot = port.rfind('.');
  if (dot != std::string::npos) return port.substr(0, dot);
  return "usb" + port.substr(0, port.find('-'));
}

HealService::HealService(const AgentConfig& config, const Clock& clock, os::EventLoop& loop, Inventory& inventory,
                         ResetService& resets, const AdbHost& adb, std::function<bool(const std::string&)> busy,
                         std::function<void(const std::string&)> phone_changed, UsbBackend* usb,
                         std::unique_ptr<BlockingRunner> prober)
    : config_(config),
      heal_(config.heal),
      clock_(clock),
      loop_(loop),
      inventory_(inventory),
      resets_(resets),
      adb_(adb),
      busy_(std::move(busy)),
      phone_changed_(std::move(phone_changed)),
      usb_(usb),
      prober_(prober ? std::move(prober) : std::make_unique<WorkerThread>("pf-heal-probe")) {
  for (const auto& p : config.phones) {
    if (auto hub = hubOf(p)) hubs_[*hub].phones.push_back(p.id);
  }
}

void HealService::start() {
  if (!heal_.enabled) {
    spdlog::info("heal.disabled");
    return;
  }
  for (const auto& p : config_.phones) look(p.id);
  loop_.startTimer(std::chrono::duration_cast<std::chrono::milliseconds>(heal_.probe_interval),
                   [this] { probeRound(); });
}

void HealService::stop() {
  stopping_ = true;
  prober_.reset();  // joins the probe running now; its post finds stopping_ set
}

std::chrono::seconds HealService::backoffAfter(int failures) const {
  if (failures <= 0) return std::chrono::seconds(0);
  auto wait = kFirstBackoff;
  for (int i = 1; i < failures && wait < heal_.backoff_max; ++i) wait *= 2;
  return std::min(wait, heal_.backoff_max);
}

void HealService::phoneStateChanged(const std::string& phone_id) { look(phone_id); }

void HealService::itemEnded(const std::string& phone_id) { look(phone_id); }

void HealService::resetEnded(const std::string& phone_id, const std::string& trigger, bool ok) {
  if (!heal_.enabled || stopping_) return;
  auto it = tracks_.find(phone_id);
  if (it == tracks_.end()) return;
  Track& t = it->second;
  if (trigger == "auto") {
    if (ok) {
      ++stats_.healed;
      const double out_s = t.out_since_ns ? static_cast<double>(clock_.bootNowNs() - *t.out_since_ns) / 1e9 : 0.0;
      spdlog::info("heal.healed phone_id={} failures_before={} out_for_s={:.1f}", phone_id, t.failures, out_s);
      t.failures = 0;
      t.retry_at_ns = 0;
      t.probe_failed.reset();
    } else {
      ++stats_.failed;
      ++t.failures;
      const auto wait = backoffAfter(t.failures);
      t.retry_at_ns = clock_.bootNowNs() + ns(wait);
      spdlog::warn("heal.failed phone_id={} failures={} retry_in_s={}", phone_id, t.failures, wait.count());
    }
  } else if (ok) {
    // Any ladder that works starts the back-off over; a technician's also
    // lifts a quarantine (the ResetService cleared the attention) and forgets
    // the drops that led to it.
    t.failures = 0;
    t.retry_at_ns = 0;
    t.probe_failed.reset();
    if (trigger == "technician" && !t.drops_ns.empty()) {
      t.drops_ns.clear();
      inventory_.setDrops(phone_id, 0, t.last_drop_at);
      spdlog::info("heal.drops_cleared phone_id={} by=technician_reset", phone_id);
    }
  }
  look(phone_id);
}

void HealService::look(const std::string& phone_id) {
  if (!heal_.enabled || stopping_) return;
  auto s = inventory_.phone(phone_id);
  if (!s) return;
  Track& t = tracks_[phone_id];
  const std::string& state = s->reported_state;
  const bool server_up = inventory_.serverUp();
  const Hub* hub = hubOfPhone(phone_id);
  if (state != t.state) {
    const bool was_device = t.state == kStateDevice;
    t.state = state;
    t.probe_failed.reset();  // the server sees the change itself now
    // Its hub's power cycle, not the phone, takes it off the bus.
    if (was_device && server_up && !s->resetting && !hubCycling(hub)) drop(phone_id, t, "adb_state " + state);
  }
  const std::optional<Attention>& attention = s->attention;
  const bool quarantined = attention && attention->reason == kAttentionFlapping;

  if (state == kStateDevice && !t.probe_failed) {
    disarm(t);
    // Back: the hub it waited on works again (or never was the fault).
    if (attention && attention->reason == kAttentionHub) clearAttention(phone_id, kAttentionHub);
    if (t.out_since_ns) {
      spdlog::info("heal.back phone_id={} out_for_s={:.1f}", phone_id,
                   static_cast<double>(clock_.bootNowNs() - *t.out_since_ns) / 1e9);
      t.out_since_ns.reset();
      t.failures = 0;
      t.retry_at_ns = 0;
      // A failed heal asked for a technician; the phone is back without one.
      if (attention && attention->reason == kAttentionResetFailed) clearAttention(phone_id, kAttentionResetFailed);
    }
    if (attention && attention->reason == kAttentionUnauthorized) clearAttention(phone_id, kAttentionUnauthorized);
    return;
  }
  if (state == kStateUnauthorized) {
    disarm(t);
    t.out_since_ns.reset();
    // Connected again, so not down because of its hub: the prompt is what it
    // needs now. It replaces a failed reset's attention too (a ladder that
    // ended while the phone sat unauthorized could not bring it to `device`);
    // only a flap quarantine stays, since only a technician's reset lifts it.
    const bool hub_attention = attention && attention->reason == kAttentionHub;
    if (hub_attention) clearAttention(phone_id, kAttentionHub);
    const bool kept = attention && !hub_attention &&
                      (attention->reason == kAttentionUnauthorized || attention->reason == kAttentionFlapping);
    if (!kept && !s->resetting) {
      ++stats_.unauthorized;
      inventory_.setAttention(
          phone_id, Attention{kAttentionUnauthorized,
                              "the phone is unauthorized: accept the USB debugging prompt on it", clock_.wallNowMs()});
      resets_.recordAction(phone_id, "unauthorized", "adb_state unauthorized: needs its USB debugging prompt accepted");
      spdlog::warn("heal.unauthorized phone_id={} serial={}", phone_id, s->config.serial);
    }
    return;
  }
  if (attention && attention->reason == kAttentionUnauthorized) clearAttention(phone_id, kAttentionUnauthorized);
  // Out of `device` (or `device` with a dead adbd). A server that is down is
  // the device tracker's to restart; the phones are looked at again then.
  if (!server_up) {
    disarm(t);
    t.out_since_ns.reset();
    return;
  }
  const std::int64_t now = clock_.bootNowNs();
  if (!t.out_since_ns) t.out_since_ns = now;
  if (s->resetting || quarantined || busy_(phone_id)) {
    disarm(t);  // the reset's end, the technician or the item's end looks again
    return;
  }
  if (hub && hub->state == "power_cycling") {
    disarm(t);  // the hub's power cycle heals it; hubCycled looks again
    return;
  }
  std::int64_t due = std::max(t.probe_failed ? now : *t.out_since_ns + ns(heal_.after), t.retry_at_ns);
  if (hub) due = std::max(due, hub->hold_until_ns);  // re-enumerating after the power cycle
  if (now >= due) return heal(phone_id, t, *s);
  arm(phone_id, t, due);
}

const HealService::Hub* HealService::hubOfPhone(const std::string& phone_id) const {
  const PhoneConfig* phone = config_.findPhone(phone_id);
  const auto hub_id = phone ? hubOf(*phone) : std::nullopt;
  if (!hub_id) return nullptr;
  auto it = hubs_.find(*hub_id);
  return it == hubs_.end() ? nullptr : &it->second;
}

bool HealService::hubCycling(const Hub* hub) const {
  return hub != nullptr && (hub->state == "power_cycling" || clock_.bootNowNs() < hub->hold_until_ns);
}

void HealService::arm(const std::string& phone_id, Track& t, std::int64_t due_ns) {
  disarm(t);
  const auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::nanoseconds(due_ns - clock_.bootNowNs()) + std::chrono::nanoseconds(999'999));
  t.timer = loop_.startTimer(delay, [this, phone_id] {
    tracks_[phone_id].timer = 0;
    look(phone_id);
  });
}

void HealService::disarm(Track& t) {
  if (t.timer != 0) loop_.cancelTimer(std::exchange(t.timer, 0));
}

void HealService::heal(const std::string& phone_id, Track& t, const PhoneSnapshot& s) {
  disarm(t);
  std::string reason;
  if (t.probe_failed) {
    reason = "liveness probe failed: " + *t.probe_failed;
  } else {
    const auto out_s = (clock_.bootNowNs() - t.out_since_ns.value_or(clock_.bootNowNs())) / 1'000'000'000;
    reason = "adb_state " + s.reported_state + " for " + std::to_string(out_s) + " s";
  }
  if (t.failures > 0) reason += "; attempt " + std::to_string(t.failures + 1);
  auto record = resets_.autoReset(phone_id, "auto", reason);
  if (!record) {
    spdlog::error("heal.attempt_failed phone_id={} error=\"{}\"", phone_id, record.error().message);
    return;
  }
  ++stats_.attempts;
  spdlog::info("heal.attempt phone_id={} reset_id={} reason=\"{}\"", phone_id, record->reset_id, reason);
}

void HealService::pruneDrops(const std::string& phone_id, Track& t) {
  const std::int64_t since = clock_.bootNowNs() - ns(heal_.flap_window);
  const auto before = t.drops_ns.size();
  while (!t.drops_ns.empty() && t.drops_ns.front() <= since) t.drops_ns.pop_front();
  if (t.drops_ns.size() != before) inventory_.setDrops(phone_id, static_cast<int>(t.drops_ns.size()), t.last_drop_at);
}

void HealService::drop(const std::string& phone_id, Track& t, const std::string& why) {
  ++stats_.drops;
  t.drops_ns.push_back(clock_.bootNowNs());
  t.last_drop_at = clock_.wallNowMs();
  pruneDrops(phone_id, t);
  const int count = static_cast<int>(t.drops_ns.size());
  inventory_.setDrops(phone_id, count, t.last_drop_at);
  spdlog::info("heal.drop phone_id={} why=\"{}\" drops={} window_s={}", phone_id, why, count,
               heal_.flap_window.count());
  hubDrop(phone_id);
  if (count < heal_.flap_count) return;
  auto s = inventory_.phone(phone_id);
  if (s && s->attention && s->attention->reason == kAttentionFlapping) return;
  ++stats_.quarantines;
  disarm(t);
  const std::string detail = "dropped " + std::to_string(count) + " times within " +
                             std::to_string(heal_.flap_window.count()) +
                             " s; takes no work until a technician's reset succeeds";
  inventory_.setAttention(phone_id, Attention{kAttentionFlapping, detail, clock_.wallNowMs()});
  resets_.recordAction(phone_id, "quarantine", "flapping: " + detail);
  spdlog::warn("heal.quarantined phone_id={} drops={} window_s={}", phone_id, count, heal_.flap_window.count());
}

void HealService::hubDrop(const std::string& phone_id) {
  const PhoneConfig* phone = config_.findPhone(phone_id);
  const auto hub_id = phone ? hubOf(*phone) : std::nullopt;
  if (!hub_id) return;
  Hub& hub = hubs_[*hub_id];
  const std::int64_t now = clock_.bootNowNs();
  hub.last_drop_ns[phone_id] = now;
  const std::int64_t window = ns(heal_.hub_window);
  if (hub.last_event_ns && now - *hub.last_event_ns < window) return;  // this burst has its event
  boost::json::array dropped;
  std::vector<std::string> names;
  for (const auto& [id, at] : hub.last_drop_ns) {
    if (now - at <= window) {
      dropped.emplace_back(id);
      names.push_back(id);
    }
  }
  if (names.size() < 2) return;
  hub.last_event_ns = now;
  ++stats_.hub_events;
  std::string action = "none";
  std::string detail;
  const auto busy = std::find_if(hub.phones.begin(), hub.phones.end(), [this](const auto& id) { return busy_(id); });
  if (!config_.reset.hub_power_cycle) {
    detail = "reset.hub_power_cycle is off: each phone is healed on its own";
  } else if (hub_id->starts_with("usb")) {
    detail = "the phones sit on a root hub, which has no upstream port to switch";
  } else if (usb_ == nullptr) {
    detail = "no USB access";
  } else if (busy != hub.phones.end()) {
    detail = "phone " + *busy + " runs an item: cutting power would kill it; each phone is healed on its own";
  } else if (now < hub.retry_at_ns) {
    const std::string wait = std::to_string((hub.retry_at_ns - now) / 1'000'000'000);
    detail = "the hub's back-off allows the next power cycle in " + wait + " s; each phone is healed on its own";
    needsTechnicianAtHub(*hub_id, hub,
                         "its phones dropped together again and, after a failed power cycle, the agent does not "
                         "power-cycle hub " +
                             *hub_id + " for another " + wait + " s");
  } else {
    action = "power_cycle";
    detail = "power-cycling the hub's upstream port " + *hub_id;
    hub.state = "power_cycling";
    ++stats_.hub_power_cycles;
    prober_->run([this, hub_id = *hub_id, power_off = config_.reset.hub_power_off] {
      UsbDeviceRef ref;
      ref.port_path = hub_id;
      Status result = usb_->powerCycle(ref, std::chrono::duration_cast<std::chrono::milliseconds>(power_off));
      if (stopping_) return;
      loop_.post([this, hub_id, result] { hubCycled(hub_id, result); });
    });
  }
  hub.last_event = boost::json::object{{"at", formatRfc3339(clock_.wallNowMs())},
                                       {"phones", std::move(dropped)},
                                       {"action", action},
                                       {"detail", detail}};
  std::string list;
  for (const auto& id : names) list += (list.empty() ? "" : ",") + id;
  spdlog::warn("heal.hub_event hub_id={} phones={} action={} detail=\"{}\"", *hub_id, list, action, detail);
  std::string reason = "hub " + *hub_id;
  reason += ": phones " + list;
  reason += " dropped within " + std::to_string(heal_.hub_window.count());
  reason += " s; " + action;
  reason += ": " + detail;
  for (const auto& id : names) resets_.recordAction(id, "hub", reason);
}

void HealService::hubCycled(const std::string& hub_id, const Status& result) {
  if (stopping_) return;
  Hub& hub = hubs_[hub_id];
  if (result) {
    hub.state = "ok";
    hub.failures = 0;
    hub.retry_at_ns = 0;
    // Its phones re-enumerate: their own heals wait as long as the ladder
    // waits for a phone after its power cycle.
    const auto hold = config_.reset.usb_reset_timeout;
    hub.hold_until_ns = clock_.bootNowNs() + ns(hold);
    hub.last_event["detail"] = "power-cycled the hub's upstream port " + hub_id;
    spdlog::info("heal.hub_power_cycled hub_id={} phones_heal_after_s={}", hub_id, hold.count());
    for (const auto& id : hub.phones) look(id);
    return;
  }
  ++stats_.hub_power_cycle_failures;
  hub.state = "power_cycle_failed";
  ++hub.failures;
  const auto wait = backoffAfter(hub.failures);
  hub.retry_at_ns = clock_.bootNowNs() + ns(wait);
  hub.last_event["detail"] = "power cycle of " + hub_id + " failed: " + result.error().message;
  spdlog::error("heal.hub_power_cycle_failed hub_id={} error=\"{}\" retry_in_s={}", hub_id, result.error().message,
                wait.count());
  needsTechnicianAtHub(hub_id, hub,
                       "the power cycle of hub " + hub_id + "'s upstream port failed (" + result.error().message + ")");
  for (const auto& id : hub.phones) look(id);  // each is healed on its own
}

void HealService::needsTechnicianAtHub(const std::string& hub_id, const Hub& hub, const std::string& why) {
  const std::string detail = why + ": check the hub's power supply and its cable to the host, then reset the phone";
  std::string list;
  for (const auto& id : hub.phones) {
    auto s = inventory_.phone(id);
    // Down: not listed as `device`; an `unauthorized` phone is connected.
    if (!s || s->reported_state == kStateDevice || s->reported_state == kStateUnauthorized) continue;
    // A quarantine stays (only a technician's reset lifts it); a failed reset
    // is explained better by its hub.
    const auto& a = s->attention;
    if (a && (a->reason == kAttentionFlapping || a->reason == kAttentionUnauthorized)) continue;
    const WallMs since = a && a->reason == kAttentionHub ? a->since : clock_.wallNowMs();
    inventory_.setAttention(id, Attention{kAttentionHub, detail, since});
    list += (list.empty() ? "" : ",") + id;
  }
  if (!list.empty()) spdlog::warn("heal.hub_attention hub_id={} phones={} detail=\"{}\"", hub_id, list, detail);
}

boost::json::array HealService::hubsJson() const {
  boost::json::array out;
  for (const auto& [id, hub] : hubs_) {
    boost::json::array phones;
    for (const auto& p : hub.phones) phones.emplace_back(p);
    out.push_back(boost::json::object{
        {"hub_id", id},
        {"phones", std::move(phones)},
        {"state", hub.state},
        {"last_event", hub.last_event.empty() ? boost::json::value(nullptr) : boost::json::value(hub.last_event)}});
  }
  return out;
}

void HealService::clearAttention(const std::string& phone_id, const char* reason) {
  inventory_.setAttention(phone_id, std::nullopt);
  spdlog::info("heal.attention_cleared phone_id={} reason={}", phone_id, reason);
  if (phone_changed_) phone_changed_(phone_id);
}

void HealService::probeRound() {
  if (stopping_) return;
  loop_.startTimer(std::chrono::duration_cast<std::chrono::milliseconds>(heal_.probe_interval),
                   [this] { probeRound(); });
  if (!inventory_.serverUp()) return;
  for (const auto& p : config_.phones) {
    Track& t = tracks_[p.id];
    pruneDrops(p.id, t);
    auto s = inventory_.phone(p.id);
    if (!s || s->reported_state != kStateDevice || s->resetting || t.probing || t.probe_failed) continue;
    if (s->attention && s->attention->reason != kAttentionResetFailed) continue;
    if (busy_(p.id) || hubCycling(hubOfPhone(p.id))) continue;
    t.probing = true;
    inventory_.setProbing(p.id, true);  // an item waits for the probe's end
    prober_->run([this, phone_id = p.id, serial = p.serial] {
      auto out = adb_.shell(serial, kProbeCommand, kProbeTimeout, 4096);
      Status answer = okStatus();
      if (!out) {
        answer = out.error();
      } else if (out->find("phonefarm-probe") == std::string::npos) {
        answer = makeError(ErrorKind::kUnavailable, "unexpected answer to echo");
      }
      if (stopping_) return;
      loop_.post([this, phone_id, answer] { probed(phone_id, answer); });
    });
  }
}

void HealService::probed(const std::string& phone_id, const Status& answer) {
  if (stopping_) return;
  Track& t = tracks_[phone_id];
  t.probing = false;
  inventory_.setProbing(phone_id, false);
  // An item held off by the probe may start now (the daemon's announce posts,
  // so a heal decided below comes first).
  if (phone_changed_) phone_changed_(phone_id);
  ++stats_.probes;
  if (answer) return;
  auto s = inventory_.phone(phone_id);
  // Only a phone still idle in `device` is the probe's to heal: anything else
  // is looked at through its own event.
  if (!s || s->reported_state != kStateDevice || s->resetting || busy_(phone_id)) return;
  if (hubCycling(hubOfPhone(phone_id))) return;  // its hub's power cycle cut it off
  ++stats_.probe_failures;
  t.probe_failed = answer.error().message;
  spdlog::warn("heal.probe_failed phone_id={} error=\"{}\"", phone_id, *t.probe_failed);
  resets_.recordAction(phone_id, "probe", "liveness probe failed: " + *t.probe_failed);
  drop(phone_id, t, "liveness probe failed");
  look(phone_id);
}

}  // namespace phonefarm::phone
