// DeviceReconciler; see device_reconciler.hpp.
#include "agent/phone/device_reconciler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace phonefarm::phone {

DeviceReconciler::DeviceReconciler(os::EventLoop& loop, const Clock& clock, const AdbHost& adb,
                                   std::chrono::milliseconds interval,
                                   std::function<void(std::vector<AdbDevice>)> on_list,
                                   std::vector<std::string> network_serials, std::chrono::milliseconds reconnect_every,
                                   std::unique_ptr<BlockingRunner> worker)
    : loop_(loop),
      clock_(clock),
      adb_(adb),
      interval_(interval),
      on_list_(std::move(on_list)),
      network_serials_(std::move(network_serials)),
      reconnect_every_(reconnect_every),
      worker_(worker ? std::move(worker) : std::make_unique<WorkerThread>("pf-adb-sync")) {}

void DeviceReconciler::start() {
  loop_.post([this] { arm(); });
}

void DeviceReconciler::stop() {
  stopping_ = true;
  worker_.reset();  // joins the round running now; a pending timer finds stopping_ set
}

void DeviceReconciler::arm() {
  if (stopping_) return;
  loop_.startTimer(interval_, [this] {
    if (stopping_ || !worker_) return;
    worker_->run([this] { round(); });
  });
}

void DeviceReconciler::round() {
  // A server that is down is the tracker's business: skip this round.
  if (paused_ && paused_()) {
    loop_.post([this] { arm(); });
    return;
  }
  if (auto list = adb_.devices(std::min(interval_, std::chrono::milliseconds(2000)))) {
    reconnectMissing(*list);
    if (!stopping_) on_list_(std::move(*list));
  }
  loop_.post([this] { arm(); });
}

void DeviceReconciler::reconnectMissing(const std::vector<AdbDevice>& devices) {
  const std::int64_t now = clock_.bootNowNs();
  const std::int64_t every_ns = std::chrono::nanoseconds(reconnect_every_).count();
  for (const auto& serial : network_serials_) {
    if (stopping_) return;
    const bool listed =
        std::any_of(devices.begin(), devices.end(), [&](const AdbDevice& d) { return d.serial == serial; });
    if (listed) continue;
    auto last = last_attempt_ns_.find(serial);
    if (last != last_attempt_ns_.end() && now - last->second < every_ns) continue;
    last_attempt_ns_[serial] = now;
    auto r = adb_.connect(serial, std::chrono::milliseconds(3000));
    if (r) {
      spdlog::info("phone.adb_connect serial={} result=\"{}\"", serial, *r);
    } else {
      spdlog::warn("phone.adb_connect_failed serial={} error=\"{}\"", serial, r.error().message);
    }
  }
}

}  // namespace phonefarm::phone
