// Which environment variable names a submitted queue item may set. Jobs are
// allowed commands under work.allowed_command_prefixes; an env name that
// makes the dynamic loader, a shell or an interpreter run extra code
// (LD_PRELOAD, BASH_ENV, PYTHONSTARTUP, NODE_OPTIONS, ...) would turn any
// allowed script into an arbitrary command, so those names are refused at
// submit (README, "Trust boundary"). An operator who knows exactly what the
// jobs need sets work.allowed_env instead: then only those names pass.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace phonefarm::api {

// The denylist, as documented: exact names and prefixes ending in '*'.
const std::vector<std::string_view>& deniedEnvPatterns();

// Why `name` may not be set, or nullopt. `allowlist` is work.allowed_env:
// when set it replaces the denylist.
std::optional<std::string> envNameRefusal(std::string_view name,
                                          const std::optional<std::vector<std::string>>& allowlist);

}  // namespace phonefarm::api
