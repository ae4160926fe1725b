// The agent's descriptor limit against http.max_connections: each connection
// is a descriptor, and a limit below the cap would turn the cap (and the
// eviction of idle connections at it) into failed accepts.
#pragma once

#include <cstddef>

namespace phonefarm {

// Descriptors the agent needs besides its connections: the store, logs,
// inotify and pidfd watches of running work, adb, libusb.
inline constexpr std::size_t kFileLimitReserve = 256;

// Raises the soft RLIMIT_NOFILE (up to the hard limit, and only as far as
// needed) when it is below max_connections + kFileLimitReserve; logs
// `agent.fd_limit` when it raised it and warns when even the hard limit is
// too low. The work inherits the raised soft limit, so it is raised only
// when the config needs it.
void ensureFileLimit(std::size_t max_connections);

}  // namespace phonefarm
