// Which environment variable names a queue item may set. Jobs are allowed
// commands under work.allowed_command_prefixes; an env name that makes the
// dynamic loader, a shell or an interpreter run extra code (LD_PRELOAD,
// BASH_ENV, PYTHONSTARTUP, NODE_OPTIONS, ...), or that points the command's
// tools somewhere the job chose (PATH, HOME), would turn any allowed script
// into an arbitrary command. Those names are refused at submit (422), again
// when the item starts (the policy may have changed since the submit), and
// by the job unit's shim, which takes the policy from the root-owned config
// instead of the agent's word (README, "Trust boundary"). An operator who
// knows exactly what the jobs need sets work.allowed_env instead: then only
// those names pass.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace phonefarm::exec {

// The denylist, as documented: exact names and prefixes ending in '*'.
const std::vector<std::string_view>& deniedEnvPatterns();

// Why `name` may not be set, or nullopt. `allowlist` is work.allowed_env:
// when set it replaces the denylist.
std::optional<std::string> envNameRefusal(std::string_view name,
                                          const std::optional<std::vector<std::string>>& allowlist);

// Names the agent sets itself for every command (PHONEFARM_*, ANDROID_SERIAL);
// a submit may not set them.
bool isAgentSetEnvName(std::string_view name);

// The PATH a command gets unless its item sets one.
inline constexpr std::string_view kDefaultCommandPath = "/usr/local/bin:/usr/bin:/bin";

// The whole environment the agent hands a command ("K=V" entries), judged
// by the job unit's shim: the agent's own names pass; PATH and HOME pass
// with the values the agent gives every command (kDefaultCommandPath and
// `home`, run_as's home) or when the policy allows them; every other name as
// envNameRefusal says. Returns the refused names, each once, in order
// (names only: the values may be secrets).
std::vector<std::string> refusedCommandEnvNames(const std::vector<std::string>& entries,
                                                const std::optional<std::vector<std::string>>& allowlist,
                                                std::string_view home);

}  // namespace phonefarm::exec
