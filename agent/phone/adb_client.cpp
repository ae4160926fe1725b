// AdbClient; see adb_client.hpp. Every answer of the server is capped and
// made printable before it is returned.
#include "agent/phone/adb_client.hpp"

#include <utility>

#include "agent/phone/adb_host_connection.hpp"
#include "agent/phone/adb_text.hpp"

namespace phonefarm::phone {
namespace {

using adb_text::checkToken;
using adb_text::meansNotFound;
using adb_text::printable;
using adb_text::startsWith;
using adb_text::withContext;

constexpr std::size_t kVersionCap = 64;
constexpr std::size_t kMessageCap = 4096;
constexpr std::size_t kListCap = 0xffff;

}  // namespace

AdbClient::AdbClient(AdbEndpoint endpoint) : endpoint_(std::move(endpoint)) {}

Result<std::string> AdbClient::queryPayload(std::string_view op, std::string_view service, std::size_t cap,
                                            std::chrono::milliseconds timeout) const {
  const auto deadline = AdbDeadline::after(timeout);
  auto connection = AdbHostConnection::open(endpoint_, deadline);
  if (!connection.ok()) return withContext(op, connection.error());
  if (auto status = connection->request(service, deadline); !status.ok()) return withContext(op, status.error());
  auto payload = connection->readLengthPrefixed(cap, deadline);
  if (!payload.ok()) return withContext(op, payload.error());
  return payload;
}

Result<std::string> AdbClient::version(std::chrono::milliseconds timeout) const {
  return queryPayload("version", "host:version", kVersionCap, timeout);
}

Result<std::vector<AdbDevice>> AdbClient::devices(std::chrono::milliseconds timeout) const {
  auto payload = queryPayload("devices", "host:devices-l", kListCap, timeout);
  if (!payload.ok()) return payload.error();
  return parseDeviceList(*payload);
}

Result<std::string> AdbClient::connect(std::string_view host_port, std::chrono::milliseconds timeout) const {
  if (auto valid = checkToken("address", host_port); !valid.ok()) return withContext("connect", valid.error());
  const std::string op = "connect " + std::string(host_port);
  auto message = queryPayload(op, "host:connect:" + std::string(host_port), kMessageCap, timeout);
  if (!message.ok()) return message.error();
  std::string text = printable(*message);
  if (startsWith(text, "connected to ") || startsWith(text, "already connected to ")) return text;
  return makeError(ErrorKind::kUnavailable,
                   "adb " + op + ": " + (text.empty() ? std::string("empty answer from the adb server") : text));
}

Result<std::string> AdbClient::disconnect(std::string_view host_port, std::chrono::milliseconds timeout) const {
  if (auto valid = checkToken("address", host_port); !valid.ok()) return withContext("disconnect", valid.error());
  auto message = queryPayload("disconnect " + std::string(host_port), "host:disconnect:" + std::string(host_port),
                              kMessageCap, timeout);
  if (!message.ok()) return message.error();
  return printable(*message);
}

Status AdbClient::reconnect(std::string_view serial, std::chrono::milliseconds timeout) const {
  if (auto valid = checkToken("serial", serial); !valid.ok()) return withContext("reconnect", valid.error());
  const std::string op = "reconnect " + std::string(serial);
  auto message = queryPayload(op, "host-serial:" + std::string(serial) + ":reconnect", kMessageCap, timeout);
  if (!message.ok()) return message.error();
  const std::string text = printable(*message);
  if (startsWith(text, "reconnecting ")) return okStatus();
  return makeError(meansNotFound(text) ? ErrorKind::kNotFound : ErrorKind::kUnavailable,
                   "adb " + op + ": " + (text.empty() ? std::string("empty answer from the adb server") : text));
}

Result<std::string> AdbClient::shell(std::string_view serial, std::string_view command,
                                     std::chrono::milliseconds timeout, std::size_t max_output) const {
  if (auto valid = checkToken("serial", serial); !valid.ok()) return withContext("shell", valid.error());
  const std::string op = "shell on " + std::string(serial);
  if (command.empty()) return makeError(ErrorKind::kInvalid, "adb " + op + ": empty command");
  const auto deadline = AdbDeadline::after(timeout);
  auto connection = AdbHostConnection::open(endpoint_, deadline);
  if (!connection.ok()) return withContext(op, connection.error());
  if (auto status = connection->request("host:transport:" + std::string(serial), deadline); !status.ok()) {
    return withContext(op, status.error());
  }
  // From here on the socket talks to the device's adbd through the server.
  if (auto status = connection->request("shell:" + std::string(command), deadline); !status.ok()) {
    return withContext(op, status.error());
  }
  auto output = connection->readUntilEof(max_output, deadline);
  if (!output.ok()) return withContext(op, output.error());
  return output;
}

}  // namespace phonefarm::phone
