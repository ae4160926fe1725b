// The device-list parser; see adb_device.hpp.
#include "agent/phone/adb_device.hpp"

#include <algorithm>
#include <optional>

#include "agent/phone/adb_text.hpp"

namespace phonefarm::phone {
namespace {

using adb_text::isVisibleAscii;
using adb_text::startsWith;

bool isStateWord(std::string_view word) {
  return !word.empty() &&
         std::all_of(word.begin(), word.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '-'; });
}

// "key:value": key [a-z_]{1,32}, value 1..kMaxAdbPropValueBytes visible ASCII.
bool splitProp(std::string_view token, std::string_view* key, std::string_view* value) {
  const auto colon = token.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 32) return false;
  *key = token.substr(0, colon);
  *value = token.substr(colon + 1);
  if (!std::all_of(key->begin(), key->end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; })) return false;
  return !value->empty() && value->size() <= kMaxAdbPropValueBytes && isVisibleAscii(*value);
}

std::optional<AdbDevice> parseDeviceLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty() || line.size() > kMaxAdbLineBytes) return std::nullopt;
  for (const char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return std::nullopt;
  }
  AdbDevice device;
  // adb prints this placeholder when the device reports no serial.
  constexpr std::string_view kNoSerial = "(no serial number)";
  std::string_view rest = line;
  if (startsWith(line, kNoSerial)) {
    device.serial = std::string(kNoSerial);
    rest = line.substr(kNoSerial.size());
    if (!rest.empty() && rest.front() != ' ' && rest.front() != '\t') return std::nullopt;
  }
  std::vector<std::string_view> tokens;
  for (std::size_t pos = 0; pos < rest.size();) {
    const auto begin = rest.find_first_not_of(" \t", pos);
    if (begin == std::string_view::npos) break;
    const auto end = std::min(rest.find_first_of(" \t", begin), rest.size());
    tokens.push_back(rest.substr(begin, end - begin));
    pos = end;
  }
  std::size_t next = 0;
  if (device.serial.empty()) {
    if (tokens.empty() || tokens[0].size() > kMaxAdbSerialBytes || !isVisibleAscii(tokens[0])) return std::nullopt;
    device.serial = std::string(tokens[0]);
    next = 1;
  }
  if (next >= tokens.size() || !isStateWord(tokens[next]) || !isVisibleAscii(tokens[next])) return std::nullopt;
  device.state = std::string(tokens[next++]);
  // The state may be several words ("no permissions (...); see [http://...]");
  // it ends at the first key:value field.
  bool in_props = false;
  for (; next < tokens.size(); ++next) {
    std::string_view key, value;
    if (splitProp(tokens[next], &key, &value)) {
      in_props = true;
      if (device.props.size() < kMaxAdbProps || device.props.count(std::string(key)) != 0) {
        device.props[std::string(key)] = std::string(value);  // the last of a repeated key wins
      }
    } else if (!in_props) {
      if (!isVisibleAscii(tokens[next]) || device.state.size() + 1 + tokens[next].size() > kMaxAdbStateBytes) {
        return std::nullopt;
      }
      device.state += ' ';
      device.state += tokens[next];
    }
    // A malformed field after the first key:value one is dropped on its own.
  }
  return device;
}

}  // namespace

std::vector<AdbDevice> parseDeviceList(std::string_view payload) {
  std::vector<AdbDevice> devices;
  std::size_t pos = 0;
  while (pos < payload.size() && devices.size() < kMaxAdbDevices) {
    const auto newline = payload.find('\n', pos);
    const auto end = newline == std::string_view::npos ? payload.size() : newline;
    if (auto device = parseDeviceLine(payload.substr(pos, end - pos))) devices.push_back(std::move(*device));
    pos = end + 1;
  }
  return devices;
}

}  // namespace phonefarm::phone
