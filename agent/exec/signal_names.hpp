// Signal names as the API and the status file spell them ("SIGTERM",
// "SIGKILL"). Used by the exec shim to record how a command died and by the
// agent to validate and resolve a queue item's stop_signal.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace phonefarm::exec {

// "SIGKILL" for SIGKILL; realtime signals as "SIGRTMIN+N"; anything else the
// table does not know as "SIG<number>", so a name is never empty.
std::string signalName(int sig);

// The number for a canonical name ("SIGTERM"; the "SIG" prefix is required and
// case matters, as in the API). nullopt for anything the table does not know.
std::optional<int> signalNumber(std::string_view name);

}  // namespace phonefarm::exec
