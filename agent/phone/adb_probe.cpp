// The adb server probe of GET /debug; see adb_probe.hpp.
#include "agent/phone/adb_probe.hpp"

#include <boost/json/array.hpp>

#include "common/os/thread_name.hpp"

namespace phonefarm::phone {

namespace json = boost::json;

AdbProbe::~AdbProbe() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void AdbProbe::probe(Done done) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  waiting_.push_back(std::move(done));
  if (!worker_.joinable()) {
    worker_ = std::thread([this] {
      os::setCurrentThreadName("pf-adb-probe");
      work();
    });
  }
  wake_.notify_one();
}

json::object AdbProbe::probeNow() const {
  const auto& ep = adb_.endpoint();
  json::object o{{"server", ep.host + ":" + std::to_string(ep.port)}};
  auto version = adb_.version(timeout_);
  if (!version) {
    o["up"] = false;
    o["error"] = version.error().message;
    return o;
  }
  o["up"] = true;
  o["version"] = *version;
  auto devices = adb_.devices(timeout_);
  if (!devices) {
    o["devices_error"] = devices.error().message;
    return o;
  }
  json::array list;
  for (const auto& d : *devices) {
    json::object props;
    for (const auto& [k, v] : d.props) props[k] = v;
    list.push_back(json::object{{"serial", d.serial}, {"state", d.state}, {"properties", std::move(props)}});
  }
  o["devices"] = std::move(list);
  return o;
}

void AdbProbe::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
    if (stopping_) return;
    auto batch = std::move(waiting_);
    waiting_.clear();
    lock.unlock();
    const json::object state = probeNow();
    for (auto& done : batch) done(state);
    lock.lock();
  }
}

}  // namespace phonefarm::phone
