// freePort: a TCP port on 127.0.0.1 that was free a moment ago, for a program
// that must be told its port before it starts (an adb server, a fake phone).
// Prefer port 0 wherever the program reports the port it bound.
#pragma once

#include <cstdint>

namespace phonefarm::testing {

// Binds port 0, reads the port the kernel chose and closes the socket. Throws
// std::system_error.
std::uint16_t freePort();

}  // namespace phonefarm::testing
