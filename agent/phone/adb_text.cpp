// The adb text helpers; see adb_text.hpp.
#include "agent/phone/adb_text.hpp"

#include <algorithm>

#include "agent/phone/adb_device.hpp"

namespace phonefarm::phone::adb_text {

bool isVisibleAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

Status checkToken(std::string_view what, std::string_view value) {
  if (value.empty()) return makeError(ErrorKind::kInvalid, std::string(what) + " is empty");
  if (value.size() > kMaxAdbSerialBytes) {
    return makeError(ErrorKind::kInvalid,
                     std::string(what) + " is longer than " + std::to_string(kMaxAdbSerialBytes) + " bytes");
  }
  if (!isVisibleAscii(value)) {
    return makeError(ErrorKind::kInvalid,
                     std::string(what) + " '" + printable(value) + "' has whitespace, control or non-ASCII characters");
  }
  return okStatus();
}

Error withContext(std::string_view op, const Error& error) {
  return makeError(error.kind, "adb " + std::string(op) + ": " + error.message);
}

std::string endpointText(const AdbEndpoint& endpoint) {
  if (endpoint.host.find(':') != std::string::npos) return "[" + endpoint.host + "]:" + std::to_string(endpoint.port);
  return endpoint.host + ":" + std::to_string(endpoint.port);
}

std::optional<std::size_t> parseHex4(std::string_view digits) {
  if (digits.size() != 4) return std::nullopt;
  std::size_t value = 0;
  for (const char c : digits) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= static_cast<std::size_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      value |= static_cast<std::size_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      value |= static_cast<std::size_t>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
  }
  return value;
}

bool startsWith(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

bool meansNotFound(std::string_view message) {
  return message.find("not found") != std::string_view::npos || startsWith(message, "no devices") ||
         startsWith(message, "no such device");
}

Error unavailable(std::string message) { return makeError(ErrorKind::kUnavailable, std::move(message)); }

std::string timedOut(std::chrono::milliseconds budget, std::string_view what) {
  return "timed out after " + std::to_string(budget.count()) + " ms " + std::string(what);
}

}  // namespace phonefarm::phone::adb_text
