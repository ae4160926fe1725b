// The reset ladder; see reset_service.hpp. A ladder is a chain of loop
// callbacks: nextStep -> (worker) kick -> kicked -> [timer | checkBack] ->
// endStep -> nextStep ... -> finish.
#include "agent/phone/reset_service.hpp"

#include <spdlog/spdlog.h>

#include <future>
#include <iterator>
#include <map>
#include <utility>

#include "common/ids.hpp"
#include "common/model/process_json.hpp"
#include "common/text/printable.hpp"

namespace phonefarm::phone {
namespace {

bool isNetworkSerial(const std::string& serial) { return serial.find(':') != std::string::npos; }

std::chrono::milliseconds ms(std::chrono::seconds s) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(s);
}

constexpr const char* kSteps[] = {"adb_reconnect", "usb_reset", "hub_power_cycle"};
constexpr std::size_t kStepCount = std::size(kSteps);

}  // namespace

ResetService::ResetService(const AgentConfig& config, store::Store& store, const Clock& clock, os::EventLoop& loop,
                           Inventory& inventory, AdbHost& adb, UsbBackend& usb,
                           std::function<void(const std::string&)> phone_changed,
                           std::unique_ptr<BlockingRunner> workers)
    : config_(config),
      store_(store),
      clock_(clock),
      loop_(loop),
      inventory_(inventory),
      adb_(adb),
      usb_(usb),
      phone_changed_(std::move(phone_changed)),
      workers_(workers ? std::move(workers) : std::make_unique<ThreadPerJob>("pf-reset")) {}

ResetService::~ResetService() {
  stopping_ = true;
  workers_.reset();  // waits for the step calls running now; their posts are never run
}

void ResetService::restoreHealth() {
  using Stored = std::map<std::string, store::StoredAttention>;
  std::promise<Result<Stored>> promise;
  auto future = promise.get_future();
  store_.submit<Stored>([](store::Db& db) { return store::PhoneRepository(db).attentionByPhone(); },
                        [&promise](Result<Stored> r) { promise.set_value(std::move(r)); });
  auto stored = future.get();
  if (!stored) return;
  for (auto& [phone_id, a] : *stored) {
    // The store is the agent's own, but a reason it does not know (a newer
    // agent's, a hand edit) still must not reach the API as is.
    const bool known = a.reason == kAttentionUnauthorized || a.reason == kAttentionFlapping ||
                       a.reason == kAttentionResetFailed || a.reason == kAttentionHub;
    if (!known) {
      a.detail = "needed attention before the agent restarted (stored reason '" + text::printable(a.reason) + "')";
      a.reason = kAttentionResetFailed;
    }
    inventory_.setAttention(phone_id, Attention{a.reason, a.detail, a.since != 0 ? a.since : clock_.wallNowMs()});
    spdlog::warn("phone.needs_attention phone_id={} reason={} (kept from before the restart)", phone_id, a.reason);
  }
}

std::optional<boost::json::object> ResetService::requestReset(const std::string& phone_id, const std::string& trigger) {
  if (!config_.reset.on_forced_cancel || config_.findPhone(phone_id) == nullptr) return std::nullopt;
  auto [record, joined] = begin(phone_id, trigger, std::nullopt, boost::json::object{{"system", "phonefarm-agent"}});
  return boost::json::object{{"reset_id", record.reset_id}, {"status", joined ? record.status : "pending"}};
}

Result<store::ResetRecord> ResetService::autoReset(const std::string& phone_id, const std::string& trigger,
                                                   std::string reason) {
  if (config_.findPhone(phone_id) == nullptr) return makeError(ErrorKind::kNotFound, "Phone not found");
  return begin(phone_id, trigger, std::move(reason), boost::json::object{{"system", "phonefarm-agent"}}).first;
}

void ResetService::recordAction(const std::string& phone_id, const std::string& trigger, std::string reason,
                                boost::json::array steps) {
  store::ResetRecord record;
  record.reset_id = newUuidV4();
  record.phone_id = phone_id;
  record.trigger = trigger;
  record.status = "recorded";
  record.reason = std::move(reason);
  record.requested_by = boost::json::object{{"system", "phonefarm-agent"}};
  record.requested_at = clock_.wallNowMs();
  record.ended_at = record.requested_at;
  record.steps = std::move(steps);
  insertRecord(std::move(record));
}

void ResetService::insertRecord(store::ResetRecord record) {
  store_.submit<Unit>(
      [record = std::move(record)](store::Db& db) {
        store::PhoneRepository(db).insertReset(record);
        return Unit{};
      },
      [](const Result<Unit>& r) {
        if (!r) spdlog::error("phone.reset_store_failed error=\"{}\"", r.error().message);
      });
}

void ResetService::technicianReset(const std::string& phone_id, std::string reason, boost::json::object requested_by,
                                   std::function<void(Result<store::ResetRecord>)> done) {
  if (config_.findPhone(phone_id) == nullptr) return done(makeError(ErrorKind::kNotFound, "Phone not found"));
  auto [record, joined] = begin(phone_id, "technician", std::move(reason), std::move(requested_by));
  // The record was queued on the store before the worker's updates; answer
  // once it is durable.
  store_.submit<Unit>([](store::Db&) { return Unit{}; },
                      [record = record, done = std::move(done)](const Result<Unit>& r) {
                        if (!r) return done(r.error());
                        done(record);
                      });
}

std::pair<store::ResetRecord, bool> ResetService::begin(const std::string& phone_id, const std::string& trigger,
                                                        std::optional<std::string> reason,
                                                        boost::json::object requested_by) {
  std::unique_lock lock(mutex_);
  if (auto it = running_.find(phone_id); it != running_.end()) {
    ++stats_.joined;
    spdlog::info("phone.reset_joined phone_id={} reset_id={} trigger={}", phone_id, it->second.reset_id, trigger);
    return {it->second, true};
  }
  store::ResetRecord record;
  record.reset_id = newUuidV4();
  record.phone_id = phone_id;
  record.trigger = trigger;
  record.status = "pending";
  record.reason = std::move(reason);
  record.requested_by = std::move(requested_by);
  record.requested_at = clock_.wallNowMs();
  running_[phone_id] = record;
  ++stats_.started;
  inventory_.setResetting(phone_id, true);
  insertRecord(record);
  lock.unlock();
  spdlog::info("phone.reset_started phone_id={} reset_id={} trigger={}", phone_id, record.reset_id, trigger);
  Ladder& ladder = ladders_[phone_id];
  ladder = Ladder{};
  ladder.record = record;
  ladder.phone = *config_.findPhone(phone_id);
  ladder.record.status = "running";
  save(ladder.record);
  nextStep(phone_id);
  return {record, false};
}

void ResetService::save(const store::ResetRecord& record, const std::optional<std::string>& health) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = running_.find(record.phone_id); it != running_.end()) it->second = record;
  }
  const PhoneConfig* phone = config_.findPhone(record.phone_id);
  store_.submit<Unit>(
      [record, health, phone = phone ? *phone : PhoneConfig{}, now = clock_.wallNowMs()](store::Db& db) {
        store::PhoneRepository repo(db);
        repo.updateReset(record, now);
        if (health) repo.upsertPhone(phone.id, phone.serial, phone.usb_port, *health, now);
        return Unit{};
      },
      [](const Result<Unit>& r) {
        if (!r) spdlog::error("phone.reset_store_failed error=\"{}\"", r.error().message);
      });
}

void ResetService::phoneStateChanged(const std::string& phone_id) {
  loop_.post([this, phone_id] { checkBack(phone_id); });
}

void ResetService::nextStep(const std::string& phone_id) {
  auto it = ladders_.find(phone_id);
  if (it == ladders_.end()) return;
  Ladder& ladder = it->second;
  if (stopping_) return;
  if (ladder.ok || ladder.next_step >= kStepCount) return finish(ladder);
  const std::size_t index = ladder.next_step++;
  ladder.step = boost::json::object{{"step", kSteps[index]}, {"started_at", formatRfc3339(clock_.wallNowMs())}};
  ladder.step_started_ns = clock_.bootNowNs();
  workers_->run([this, index, phone = ladder.phone, reset_id = ladder.record.reset_id] {
    Kick k = kick(index, phone);
    loop_.post([this, phone_id = phone.id, reset_id, k = std::move(k)]() mutable {
      kicked(phone_id, reset_id, std::move(k));
    });
  });
}

ResetService::Kick ResetService::kick(std::size_t index, const PhoneConfig& phone) {
  const bool network = isNetworkSerial(phone.serial);
  auto generation = [&] {
    auto s = inventory_.phone(phone.id);
    return s ? s->generation : 0;
  };
  auto end = [](std::string status, std::string detail) { return Kick{std::move(status), std::move(detail), {}, 0}; };
  // Kicked: the step's outcome is whether the phone comes back within `timeout`.
  auto awaitDevice = [](std::uint64_t before, std::chrono::seconds timeout, std::string what) {
    return Kick{"", std::move(what), timeout, before};
  };
  if (index == 0) {  // adb_reconnect
    const auto before = generation();
    const auto timeout = ms(config_.reset.adb_reconnect_timeout);
    std::string what;
    if (network) {
      auto d = adb_.disconnect(phone.serial, timeout);
      auto c = adb_.connect(phone.serial, timeout);
      if (!c) return end("failed", "disconnect + connect " + phone.serial + ": " + c.error().message);
      what = "disconnect + connect: " + *c;
    } else {
      if (auto st = adb_.reconnect(phone.serial, timeout); !st) {
        return end("failed", "reconnect " + phone.serial + ": " + st.error().message);
      }
      what = "reconnect " + phone.serial;
    }
    return awaitDevice(before, config_.reset.adb_reconnect_timeout, what);
  }
  if (index == 1) {  // usb_reset
    if (!config_.reset.usb_reset) return end("skipped", "disabled ([reset] usb_reset = false)");
    if (network) return end("skipped", "network phone " + phone.serial + " has no USB device");
    auto dev = usb_.find(phone.serial, phone.usb_port);
    if (!dev) return end("skipped", dev.error().message);
    const auto before = generation();
    if (auto st = usb_.reset(*dev); !st)
      return end("failed", "usb reset " + dev->port_path + ": " + st.error().message);
    return awaitDevice(before, config_.reset.usb_reset_timeout, "usb reset " + dev->port_path);
  }
  // hub_power_cycle
  if (!config_.reset.hub_power_cycle) return end("skipped", "disabled ([reset] hub_power_cycle = false)");
  if (network) return end("skipped", "network phone " + phone.serial + " has no USB port");
  auto dev = usb_.find(phone.serial, phone.usb_port);
  if (!dev && phone.usb_port) {
    // A phone that fell off the bus is what the power cycle is for: its
    // configured port still names the hub port to switch.
    UsbDeviceRef by_port;
    by_port.port_path = *phone.usb_port;
    dev = by_port;
  }
  if (!dev) return end("skipped", dev.error().message);
  const auto before = generation();
  if (auto st = usb_.powerCycle(*dev, ms(config_.reset.hub_power_off)); !st) {
    return end("failed", "hub power cycle " + dev->port_path + ": " + st.error().message);
  }
  return awaitDevice(before, config_.reset.usb_reset_timeout, "hub power cycle " + dev->port_path);
}

void ResetService::kicked(const std::string& phone_id, const std::string& reset_id, Kick k) {
  auto it = ladders_.find(phone_id);
  if (it == ladders_.end() || it->second.record.reset_id != reset_id) return;
  Ladder& ladder = it->second;
  if (!k.wait_for_device) return endStep(ladder, k.status, k.detail);
  const auto timeout = *k.wait_for_device;
  ladder.waiting = std::move(k);
  // A phone already back counts too.
  if (inventory_.backInDevice(phone_id, ladder.waiting->before)) return checkBack(phone_id);
  ladder.timer =
      loop_.startTimer(ms(timeout), [this, phone_id, reset_id, timeout] { notBack(phone_id, reset_id, timeout); });
}

void ResetService::notBack(const std::string& phone_id, const std::string& reset_id, std::chrono::seconds timeout) {
  auto it = ladders_.find(phone_id);
  if (it == ladders_.end() || it->second.record.reset_id != reset_id || !it->second.waiting) return;
  Ladder& ladder = it->second;
  const std::string what = ladder.waiting->detail;
  ladder.waiting.reset();
  ladder.timer = 0;
  endStep(ladder, "failed", what + "; not back in device state within " + std::to_string(timeout.count()) + " s");
}

void ResetService::checkBack(const std::string& phone_id) {
  auto it = ladders_.find(phone_id);
  if (it == ladders_.end() || !it->second.waiting) return;
  Ladder& ladder = it->second;
  if (!inventory_.backInDevice(phone_id, ladder.waiting->before)) return;
  if (ladder.timer != 0) loop_.cancelTimer(std::exchange(ladder.timer, 0));
  const std::string what = ladder.waiting->detail;
  ladder.waiting.reset();
  endStep(ladder, "succeeded", what + "; back in device state");
}

void ResetService::endStep(Ladder& ladder, const std::string& status, const std::string& detail) {
  const std::string name(ladder.step.at("step").as_string());
  if (metrics_ != nullptr) {
    metrics_
        ->histogram("phonefarm_reset_step_seconds", "Duration of each reset ladder step, by step and outcome.",
                    {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60}, {{"step", name}, {"outcome", status}})
        .observe(static_cast<double>(clock_.bootNowNs() - ladder.step_started_ns) / 1e9);
  }
  boost::json::object s = std::move(ladder.step);
  s["status"] = status;
  s["ended_at"] = formatRfc3339(clock_.wallNowMs());
  s["detail"] = detail;
  ladder.record.steps.push_back(std::move(s));
  spdlog::info("phone.reset_step phone_id={} reset_id={} step={} status={} detail=\"{}\"", ladder.phone.id,
               ladder.record.reset_id, name, status, detail);
  save(ladder.record);
  ladder.ok = status == "succeeded";
  if (!ladder.ok) {
    auto snapshot = inventory_.phone(ladder.phone.id);
    ladder.ok = snapshot && snapshot->reported_state == kStateDevice;
  }
  nextStep(ladder.phone.id);
}

void ResetService::finish(Ladder& ladder) {
  store::ResetRecord record = std::move(ladder.record);
  const std::string phone_id = ladder.phone.id;
  const bool ok = ladder.ok;
  ladders_.erase(phone_id);  // `ladder` is gone from here on
  record.status = ok ? "succeeded" : "failed";
  record.ended_at = clock_.wallNowMs();
  inventory_.setResetting(phone_id, false);
  // A reset that works clears what a technician was asked to look at — except
  // a flap quarantine, which only a technician's reset lifts; one that fails
  // asks for a technician, unless they are already asked for a stronger reason.
  const auto before = inventory_.phone(phone_id);
  const std::optional<Attention> attention = before ? before->attention : std::nullopt;
  const bool quarantined = attention && attention->reason == kAttentionFlapping;
  bool needs_attention = false;
  if (ok) {
    needs_attention = quarantined && record.trigger != "technician";
    if (!needs_attention) inventory_.setAttention(phone_id, std::nullopt);
  } else {
    needs_attention = true;
    if (!attention || attention->reason == kAttentionUnauthorized) {
      std::string detail = "reset " + record.reset_id + " (" + record.trigger + ") failed";
      if (!record.steps.empty()) {
        if (const auto* d = record.steps.back().as_object().if_contains("detail"); d != nullptr && d->is_string())
          detail += ": " + std::string(d->as_string());
      }
      inventory_.setAttention(phone_id, Attention{kAttentionResetFailed, std::move(detail), clock_.wallNowMs()});
    }
  }
  save(record, needs_attention ? kHealthNeedsAttention : kHealthReady);
  {
    std::lock_guard lock(mutex_);
    running_.erase(phone_id);
    ++(ok ? stats_.succeeded : stats_.failed);
  }
  if (ok) {
    spdlog::info("phone.reset_ended phone_id={} reset_id={} status=succeeded", phone_id, record.reset_id);
  } else {
    spdlog::error("phone.reset_ended phone_id={} reset_id={} status=failed health=needs_attention", phone_id,
                  record.reset_id);
  }
  if (reset_ended_) reset_ended_(phone_id, record.trigger, ok);
  if (phone_changed_) phone_changed_(phone_id);
}

bool ResetService::resetting(const std::string& phone_id) const {
  std::lock_guard lock(mutex_);
  return running_.count(phone_id) > 0;
}

ResetStats ResetService::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace phonefarm::phone
