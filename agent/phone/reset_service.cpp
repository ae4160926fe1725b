// The reset ladder; see reset_service.hpp.
#include "agent/phone/reset_service.hpp"

#include <spdlog/spdlog.h>

#include <future>

#include "common/ids.hpp"
#include "common/model/process_json.hpp"

namespace phonefarm::phone {
namespace {

bool isNetworkSerial(const std::string& serial) { return serial.find(':') != std::string::npos; }

std::chrono::milliseconds ms(std::chrono::seconds s) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(s);
}

}  // namespace

ResetService::ResetService(const AgentConfig& config, store::Store& store, const Clock& clock, Inventory& inventory,
                           AdbClient& adb, UsbBackend& usb, std::function<void(const std::string&)> phone_changed)
    : config_(config),
      store_(store),
      clock_(clock),
      inventory_(inventory),
      adb_(adb),
      usb_(usb),
      phone_changed_(std::move(phone_changed)) {}

ResetService::~ResetService() {
  stopping_ = true;
  inventory_.interrupt();
  std::vector<Worker> workers;
  {
    std::lock_guard lock(mutex_);
    workers.swap(workers_);
  }
  for (auto& w : workers) {
    if (w.thread.joinable()) w.thread.join();
  }
}

void ResetService::restoreHealth() {
  using Health = std::map<std::string, std::string>;
  std::promise<Result<Health>> promise;
  auto future = promise.get_future();
  store_.submit<Health>([](store::Db& db) { return store::PhoneRepository(db).healthByPhone(); },
                        [&promise](Result<Health> r) { promise.set_value(std::move(r)); });
  auto health = future.get();
  if (!health) return;
  for (const auto& [phone_id, h] : *health) {
    if (h == kHealthNeedsAttention) {
      inventory_.setNeedsAttention(phone_id, true);
      spdlog::warn("phone.needs_attention phone_id={} (kept from before the restart)", phone_id);
    }
  }
}

std::optional<boost::json::object> ResetService::requestReset(const std::string& phone_id, const std::string& trigger) {
  if (!config_.reset.on_forced_cancel || config_.findPhone(phone_id) == nullptr) return std::nullopt;
  auto [record, joined] = begin(phone_id, trigger, std::nullopt, boost::json::object{{"system", "phonefarm-agent"}});
  return boost::json::object{{"reset_id", record.reset_id}, {"status", joined ? record.status : "pending"}};
}

void ResetService::technicianReset(const std::string& phone_id, std::string reason, boost::json::object requested_by,
                                   std::function<void(Result<store::ResetRecord>)> done) {
  if (config_.findPhone(phone_id) == nullptr) return done(makeError(ErrorKind::kNotFound, "Phone not found"));
  auto [record, joined] = begin(phone_id, "technician", std::move(reason), std::move(requested_by));
  // The record was queued on the store before the worker's updates; answer
  // once it is durable.
  store_.submit<Unit>([](store::Db&) { return Unit{}; },
                      [record = record, done = std::move(done)](Result<Unit> r) {
                        if (!r) return done(r.error());
                        done(record);
                      });
}

std::pair<store::ResetRecord, bool> ResetService::begin(const std::string& phone_id, const std::string& trigger,
                                                        std::optional<std::string> reason,
                                                        boost::json::object requested_by) {
  std::lock_guard lock(mutex_);
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
  store_.submit<Unit>(
      [record](store::Db& db) {
        store::PhoneRepository(db).insertReset(record);
        return Unit{};
      },
      [](Result<Unit> r) {
        if (!r) spdlog::error("phone.reset_store_failed error=\"{}\"", r.error().message);
      });
  spdlog::info("phone.reset_started phone_id={} reset_id={} trigger={}", phone_id, record.reset_id, trigger);
  // Join the workers of resets that have ended (a long-lived agent must not
  // accumulate finished threads), then start this one.
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  workers_.push_back(Worker{std::thread([this, record, done] {
                              run(record);
                              done->store(true);
                            }),
                            done});
  return {record, false};
}

void ResetService::save(const store::ResetRecord& record, std::optional<std::string> health) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = running_.find(record.phone_id); it != running_.end()) it->second = record;
  }
  const PhoneConfig* phone = config_.findPhone(record.phone_id);
  store_.submit<Unit>(
      [record, health, phone = phone ? *phone : PhoneConfig{}, now = clock_.wallNowMs()](store::Db& db) {
        store::PhoneRepository repo(db);
        repo.updateReset(record);
        if (health) repo.upsertPhone(phone.id, phone.serial, phone.usb_port, *health, now);
        return Unit{};
      },
      [](Result<Unit> r) {
        if (!r) spdlog::error("phone.reset_store_failed error=\"{}\"", r.error().message);
      });
}

void ResetService::run(store::ResetRecord record) {
  const std::string phone_id = record.phone_id;
  const PhoneConfig phone = *config_.findPhone(phone_id);
  const bool network = isNetworkSerial(phone.serial);
  record.status = "running";
  save(record);

  auto inDevice = [&] {
    auto s = inventory_.phone(phone_id);
    return s && s->reported_state == kStateDevice;
  };
  auto generation = [&] {
    auto s = inventory_.phone(phone_id);
    return s ? s->generation : 0;
  };
  bool ok = false;
  auto step = [&](const std::string& name, const std::function<std::pair<std::string, std::string>()>& body) {
    if (ok || stopping_) return;
    boost::json::object s{{"step", name}, {"started_at", formatRfc3339(clock_.wallNowMs())}};
    const auto started = std::chrono::steady_clock::now();
    auto [status, detail] = body();
    if (metrics_ != nullptr) {
      metrics_
          ->histogram("phonefarm_reset_step_seconds", "Duration of each reset ladder step, by step and outcome.",
                      {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60}, {{"step", name}, {"outcome", status}})
          .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    }
    s["status"] = status;
    s["ended_at"] = formatRfc3339(clock_.wallNowMs());
    s["detail"] = detail;
    record.steps.push_back(std::move(s));
    spdlog::info("phone.reset_step phone_id={} reset_id={} step={} status={} detail=\"{}\"", phone_id, record.reset_id,
                 name, status, detail);
    save(record);
    ok = status == "succeeded";
  };
  // Waits for `device` after the kick; a phone already back counts too.
  auto awaitDevice = [&](std::uint64_t before, std::chrono::seconds timeout, const std::string& what) {
    if (inventory_.waitForDevice(phone_id, before, ms(timeout))) {
      return std::pair<std::string, std::string>{"succeeded", what + "; back in device state"};
    }
    return std::pair<std::string, std::string>{
        "failed", what + "; not back in device state within " + std::to_string(timeout.count()) + " s"};
  };

  step("adb_reconnect", [&]() -> std::pair<std::string, std::string> {
    const auto before = generation();
    const auto timeout = ms(config_.reset.adb_reconnect_timeout);
    std::string what;
    if (network) {
      auto d = adb_.disconnect(phone.serial, timeout);
      auto c = adb_.connect(phone.serial, timeout);
      if (!c) return {"failed", "disconnect + connect " + phone.serial + ": " + c.error().message};
      what = "disconnect + connect: " + *c;
    } else {
      if (auto st = adb_.reconnect(phone.serial, timeout); !st) {
        return {"failed", "reconnect " + phone.serial + ": " + st.error().message};
      }
      what = "reconnect " + phone.serial;
    }
    return awaitDevice(before, config_.reset.adb_reconnect_timeout, what);
  });
  if (!ok && inDevice()) ok = true;

  step("usb_reset", [&]() -> std::pair<std::string, std::string> {
    if (!config_.reset.usb_reset) return {"skipped", "disabled ([reset] usb_reset = false)"};
    if (network) return {"skipped", "network phone " + phone.serial + " has no USB device"};
    auto dev = usb_.find(phone.serial, phone.usb_port);
    if (!dev) return {"skipped", dev.error().message};
    const auto before = generation();
    if (auto st = usb_.reset(*dev); !st) return {"failed", "usb reset " + dev->port_path + ": " + st.error().message};
    return awaitDevice(before, config_.reset.usb_reset_timeout, "usb reset " + dev->port_path);
  });
  if (!ok && inDevice()) ok = true;

  step("hub_power_cycle", [&]() -> std::pair<std::string, std::string> {
    if (!config_.reset.hub_power_cycle) return {"skipped", "disabled ([reset] hub_power_cycle = false)"};
    if (network) return {"skipped", "network phone " + phone.serial + " has no USB port"};
    auto dev = usb_.find(phone.serial, phone.usb_port);
    if (!dev && phone.usb_port) {
      // A phone that fell off the bus is what the power cycle is for: its
      // configured port still names the hub port to switch.
      UsbDeviceRef by_port;
      by_port.port_path = *phone.usb_port;
      dev = by_port;
    }
    if (!dev) return {"skipped", dev.error().message};
    const auto before = generation();
    if (auto st = usb_.powerCycle(*dev, ms(config_.reset.hub_power_off)); !st) {
      return {"failed", "hub power cycle " + dev->port_path + ": " + st.error().message};
    }
    return awaitDevice(before, config_.reset.usb_reset_timeout, "hub power cycle " + dev->port_path);
  });
  if (!ok && inDevice()) ok = true;

  record.status = ok ? "succeeded" : "failed";
  record.ended_at = clock_.wallNowMs();
  inventory_.setResetting(phone_id, false);
  inventory_.setNeedsAttention(phone_id, !ok);
  save(record, ok ? kHealthReady : kHealthNeedsAttention);
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
  if (phone_changed_) phone_changed_(phone_id);
}

bool ResetService::resetting(const std::string& phone_id) const {
  std::lock_guard lock(mutex_);
  return running_.count(phone_id) > 0;
}

std::size_t ResetService::workerThreads() const {
  std::lock_guard lock(mutex_);
  return workers_.size();
}

ResetStats ResetService::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace phonefarm::phone
