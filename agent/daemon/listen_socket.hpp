// The HTTP listener systemd passes (socket activation, phonefarm-agent.socket):
// systemd holds the port across restarts and upgrades, so requests made while
// the agent restarts wait in the backlog instead of being refused, and no job
// can bind the port in between. Without a passed socket the agent binds
// `listen` itself (HttpServer).
#pragma once

#include <optional>
#include <string>

#include "common/config/config.hpp"

namespace phonefarm {

// The listening socket passed by systemd (sd_listen_fds, LISTEN_* unset
// afterwards so nothing the agent starts sees them), marked close-on-exec at
// once; nullopt when none was passed. Throws ConfigError when more than one
// descriptor was passed, when it is not a listening TCP socket, or when its
// address differs from `listen` (naming both: phonefarmctl's default URL is
// `listen`, so the two must agree). A `listen` port of 0 matches any port.
std::optional<int> takeActivatedListener(const ListenAddress& listen);

}  // namespace phonefarm
