// Escalation deadlines on the boot and wall clocks; see escalation_deadline.hpp.
#include "agent/cancel/escalation_deadline.hpp"

#include <algorithm>
#include <fstream>
#include <utility>

namespace phonefarm::cancel {

EscalationDeadline makeDeadline(const Clock& clock, std::string boot_id, std::int64_t force_after_seconds) {
  return EscalationDeadline{clock.wallNowMs() + force_after_seconds * 1000,
                            clock.bootNowNs() + force_after_seconds * 1'000'000'000, std::move(boot_id)};
}

std::chrono::milliseconds timeLeft(const EscalationDeadline& deadline, const Clock& clock,
                                   std::string_view current_boot_id) {
  std::int64_t left_ms = 0;
  if (!deadline.boot_id.empty() && deadline.boot_id == current_boot_id) {
    // Round up: firing a fraction early could find the tree still obeying the notice window.
    left_ms = (deadline.force_at_boot_ns - clock.bootNowNs() + 999'999) / 1'000'000;
  } else {
    left_ms = deadline.force_at - clock.wallNowMs();
  }
  return std::chrono::milliseconds(std::max<std::int64_t>(left_ms, 0));
}

std::string readBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

}  // namespace phonefarm::cancel
