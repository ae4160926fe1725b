// The built-in configuration of `phonefarm-agent --dev` (scripts/dev-up): no
// agent.toml, state and tokens under ./var, three emulators, work as nobody
// from ./var/jobs. The tokens file itself is dev_tokens.hpp.
#pragma once

#include "common/config/config.hpp"

namespace phonefarm {

// Listen 127.0.0.1:8787, state in ./var, tokens in ./var/tokens, three
// sample phones (emulator-5554…), commands under ./var/jobs/ only.
AgentConfig devConfig();

}  // namespace phonefarm
