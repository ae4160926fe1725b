// Text helpers shared by the adb host-protocol files (adb_host_connection,
// adb_client, adb_device, adb_server_launcher): the checks on what goes into a
// service name, the server's wording for "not found", the 4-hex-digit length,
// and how errors and timeouts are worded. Internal to agent/phone/.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "agent/phone/adb_host.hpp"
#include "common/result.hpp"
#include "common/text/printable.hpp"

namespace phonefarm::phone::adb_text {

// Server or child text in an error message or a log line: trailing whitespace
// dropped, newlines as " | ", other control and non-ASCII bytes as '?', at
// most 512 bytes.
inline constexpr text::PrintableOptions kServerText{.max_bytes = 512, .join_lines = true};
inline std::string printable(std::string_view text) { return text::printable(text, kServerText); }

// Every byte visible ASCII (0x21..0x7e).
bool isVisibleAscii(std::string_view text);
bool startsWith(std::string_view text, std::string_view prefix);

// Serials and host:port addresses go into service names, where the server
// splits on ':' and its parser stops at nothing: visible ASCII only, at most
// kMaxAdbSerialBytes. kInvalid naming `what` otherwise.
Status checkToken(std::string_view what, std::string_view value);

// The server's wording for "that device does not exist" (FAIL, and the OKAY
// answers of host-serial:...:reconnect): "device 'x' not found", "no devices/
// emulators found", "no such device 'x'".
bool meansNotFound(std::string_view message);

// The 4 hex digits of a length; std::strtoul would take signs and spaces.
std::optional<std::size_t> parseHex4(std::string_view digits);

// "H:P", or "[H]:P" for an IPv6 address.
std::string endpointText(const AdbEndpoint& endpoint);

Error unavailable(std::string message);
// "adb <op>: <message>", same kind.
Error withContext(std::string_view op, const Error& error);
// "timed out after N ms <what>".
std::string timedOut(std::chrono::milliseconds budget, std::string_view what);

}  // namespace phonefarm::phone::adb_text
