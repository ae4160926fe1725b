// Fault injection for tests of the real daemon (README "Test hooks"): the
// environment variable PHONEFARM_FAULT, read once at start-up, names a point
// where the agent dies on purpose. A fault only ever ends the process there
// (_exit); it never skips, delays or weakens a step, so an agent started
// without it behaves exactly as one built without this file.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace phonefarm::cancel {

enum class Fault {
  kNone,
  // A hard kill of executing work is committed and then not carried out:
  // the agent dies after the commit, before it signals the tree or answers.
  kCrashAfterCancelCommit,
};

// The fault a PHONEFARM_FAULT value names; nullopt when it names none.
std::optional<Fault> parseFault(std::string_view value);
std::string_view toString(Fault fault);

// Ends the agent at a fault point: one log line (flushed), then _exit(kFaultExitCode).
[[noreturn]] void crashAtFault(Fault fault, std::string_view where);

// The exit status of an agent that died at a fault point.
inline constexpr int kFaultExitCode = 86;

}  // namespace phonefarm::cancel
