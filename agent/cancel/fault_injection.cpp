#include "agent/cancel/fault_injection.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

namespace phonefarm::cancel {

std::optional<Fault> parseFault(std::string_view value) {
  if (value == "crash_after_cancel_commit") return Fault::kCrashAfterCancelCommit;
  return std::nullopt;
}

std::string_view toString(Fault fault) {
  switch (fault) {
    case Fault::kNone:
      return "none";
    case Fault::kCrashAfterCancelCommit:
      return "crash_after_cancel_commit";
  }
  return "none";
}

void crashAtFault(Fault fault, std::string_view where) {
  spdlog::critical("agent.fault_injected fault={} {} exit_code={}", toString(fault), where, kFaultExitCode);
  spdlog::default_logger()->flush();
  ::_exit(kFaultExitCode);
}

}  // namespace phonefarm::cancel
