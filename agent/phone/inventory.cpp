// Inventory; see inventory.hpp.
#include "agent/phone/inventory.hpp"

#include <algorithm>

namespace phonefarm::phone {

Inventory::Inventory(std::vector<PhoneConfig> phones) {
  for (auto& config : phones) {
    order_.push_back(config.id);
    PhoneSnapshot s;
    s.config = std::move(config);
    s.reported_state = kStateAbsent;
    phones_.emplace(order_.back(), std::move(s));
  }
  for (auto& [id, s] : phones_) s.adb_state = stateOf(s);
}

const AdbDevice* Inventory::match(const PhoneConfig& phone, const std::vector<AdbDevice>& devices) const {
  for (const auto& d : devices) {
    if (d.serial == phone.serial) return &d;
  }
  if (phone.usb_port) {
    for (const auto& d : devices) {
      auto usb = d.props.find("usb");
      if (usb != d.props.end() && usb->second == *phone.usb_port) return &d;
    }
  }
  return nullptr;
}

std::string Inventory::stateOf(const PhoneSnapshot& s) const {
  if (s.resetting) return kStateResetting;
  const std::string& r = s.reported_state;
  if (r == kStateDevice || r == kStateOffline || r == kStateUnauthorized || r == kStateAbsent) return r;
  // "authorizing", "connecting", "recovery", "sideload", ...: reachable but not usable.
  return kStateOffline;
}

std::vector<std::string> Inventory::update(const std::vector<AdbDevice>& devices) {
  std::vector<std::string> changed;
  {
    std::lock_guard lock(mutex_);
    server_up_ = true;
    std::vector<const AdbDevice*> claimed;
    for (const auto& id : order_) {
      PhoneSnapshot& s = phones_.at(id);
      const AdbDevice* d = match(s.config, devices);
      if (d != nullptr) claimed.push_back(d);
      const std::string reported = d != nullptr ? d->state : kStateAbsent;
      if (reported != s.reported_state) {
        ++s.generation;
        s.reported_state = reported;
        changed.push_back(id);
      }
      s.adb_state = stateOf(s);
    }
    unassigned_.clear();
    for (const auto& d : devices) {
      if (std::find(claimed.begin(), claimed.end(), &d) == claimed.end()) unassigned_.push_back(d);
    }
  }
  return changed;
}

std::vector<std::string> Inventory::serverLost() {
  std::vector<std::string> changed;
  {
    std::lock_guard lock(mutex_);
    server_up_ = false;
    unassigned_.clear();
    for (const auto& id : order_) {
      PhoneSnapshot& s = phones_.at(id);
      if (s.reported_state != kStateAbsent) {
        ++s.generation;
        s.reported_state = kStateAbsent;
        changed.push_back(id);
      }
      s.adb_state = stateOf(s);
    }
  }
  return changed;
}

std::optional<PhoneSnapshot> Inventory::phone(const std::string& phone_id) const {
  std::lock_guard lock(mutex_);
  auto it = phones_.find(phone_id);
  if (it == phones_.end()) return std::nullopt;
  return it->second;
}

std::vector<PhoneSnapshot> Inventory::phones() const {
  std::lock_guard lock(mutex_);
  std::vector<PhoneSnapshot> out;
  for (const auto& id : order_) out.push_back(phones_.at(id));
  return out;
}

std::vector<AdbDevice> Inventory::unassigned() const {
  std::lock_guard lock(mutex_);
  return unassigned_;
}

bool Inventory::serverUp() const {
  std::lock_guard lock(mutex_);
  return server_up_;
}

bool Inventory::canStart(const std::string& phone_id, bool wait_for_device) const {
  std::lock_guard lock(mutex_);
  auto it = phones_.find(phone_id);
  if (it == phones_.end()) return false;
  const PhoneSnapshot& s = it->second;
  if (s.resetting || s.probing || s.needs_attention) return false;
  return !wait_for_device || s.reported_state == kStateDevice;
}

void Inventory::setResetting(const std::string& phone_id, bool resetting) {
  std::lock_guard lock(mutex_);
  auto it = phones_.find(phone_id);
  if (it == phones_.end()) return;
  it->second.resetting = resetting;
  it->second.adb_state = stateOf(it->second);
}

void Inventory::setProbing(const std::string& phone_id, bool probing) {
  std::lock_guard lock(mutex_);
  auto it = phones_.find(phone_id);
  if (it != phones_.end()) it->second.probing = probing;
}

void Inventory::setAttention(const std::string& phone_id, std::optional<Attention> attention) {
  PhoneConfig config;
  {
    std::lock_guard lock(mutex_);
    auto it = phones_.find(phone_id);
    if (it == phones_.end()) return;
    const auto& before = it->second.attention;
    const bool same = before.has_value() == attention.has_value() &&
                      (!before || (before->reason == attention->reason && before->detail == attention->detail &&
                                   before->since == attention->since));
    it->second.needs_attention = attention.has_value();
    it->second.attention = attention;
    if (same || !attention_observer_) return;
    config = it->second.config;
  }
  attention_observer_(config, attention);
}

void Inventory::setDrops(const std::string& phone_id, int drops, std::optional<WallMs> last_drop_at) {
  std::lock_guard lock(mutex_);
  auto it = phones_.find(phone_id);
  if (it == phones_.end()) return;
  it->second.drops = drops;
  it->second.last_drop_at = last_drop_at;
}

bool Inventory::backInDevice(const std::string& phone_id, std::uint64_t after_generation) const {
  std::lock_guard lock(mutex_);
  auto it = phones_.find(phone_id);
  if (it == phones_.end()) return false;
  return it->second.generation > after_generation && it->second.reported_state == kStateDevice;
}

}  // namespace phonefarm::phone
