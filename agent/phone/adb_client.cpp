// AdbClient and the host-protocol framing under it (see adb_client.hpp), plus
// startAdbServer. The server and whatever answers on its port are not trusted:
// lengths are parsed strictly, payloads capped, and server text is made
// printable before it goes into an error or a log line.
#include "agent/phone/adb_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <optional>
#include <system_error>
#include <utility>

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace phonefarm::phone {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kMaxRequestBytes = 0xffff;  // what 4 hex digits can say
constexpr std::size_t kVersionCap = 64;
constexpr std::size_t kMessageCap = 4096;
constexpr std::size_t kListCap = 0xffff;
constexpr std::size_t kMaxErrorText = 512;
constexpr std::size_t kMaxChildOutput = 4096;

std::string errnoText(int err) { return std::system_category().message(err); }

Error unavailable(std::string message) { return makeError(ErrorKind::kUnavailable, std::move(message)); }

std::string timedOut(const AdbDeadline& deadline, std::string_view what) {
  return "timed out after " + std::to_string(deadline.budget.count()) + " ms " + std::string(what);
}

// Server or child text made safe for an error message or a log line: trailing
// whitespace dropped, newlines as " | ", other control and non-ASCII bytes as
// '?', at most kMaxErrorText bytes.
std::string printable(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  std::string out;
  for (const char c : text) {
    if (out.size() >= kMaxErrorText) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += " | ";
    } else if (u < 0x20 || u >= 0x7f) {
      out += '?';
    } else {
      out += c;
    }
  }
  return out;
}

bool isVisibleAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

// Serials and host:port addresses go into service names, where the server
// splits on ':' and its parser stops at nothing: visible ASCII only.
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

// The poll() timeout left until the deadline: -1 for never, else >= 0.
int pollTimeoutMs(const AdbDeadline& deadline) {
  if (deadline.isNever()) return -1;
  const auto left = deadline.at - SteadyClock::now();
  if (left <= SteadyClock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<std::chrono::milliseconds::rep>(ms, INT_MAX));
}

enum class Wait { kReady, kTimeout, kWoken };

// Waits for `events` on fd (error and hang-up count as ready: the next call
// reports them), for wake_fd to turn readable, or for the deadline.
Result<Wait> waitFor(int fd, short events, const AdbDeadline& deadline, int wake_fd) {
  for (;;) {
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    const nfds_t count = wake_fd >= 0 ? 2 : 1;
    const int timeout = pollTimeoutMs(deadline);
    const int rc = ::poll(fds, count, timeout);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return makeError(ErrorKind::kInternal, "poll: " + errnoText(errno));
    }
    if (count == 2 && fds[1].revents != 0) return Wait::kWoken;
    if (fds[0].revents != 0) return Wait::kReady;
    if (timeout == 0 || SteadyClock::now() >= deadline.at) return Wait::kTimeout;
  }
}

// The 4 hex digits of a length; std::strtoul would take signs and spaces.
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

// The server's wording for "that device does not exist" (FAIL, and the OKAY
// answers of host-serial:...:reconnect): "device 'x' not found", "no devices/
// emulators found", "no such device 'x'".
bool meansNotFound(std::string_view message) {
  return message.find("not found") != std::string_view::npos || startsWith(message, "no devices") ||
         startsWith(message, "no such device");
}

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

Result<SocketAddress> resolveNumeric(const AdbEndpoint& endpoint) {
  SocketAddress address;
  std::string host = endpoint.host == "localhost" ? "127.0.0.1" : endpoint.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(endpoint.port);
    address.length = sizeof(sockaddr_in);
    return address;
  }
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(endpoint.port);
    address.length = sizeof(sockaddr_in6);
    return address;
  }
  return makeError(ErrorKind::kInvalid,
                   "adb server host '" + printable(endpoint.host) + "' is not a numeric IP address (or \"localhost\")");
}

}  // namespace

// ---------------------------------------------------------------------------
// parseDeviceList

namespace {

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

// ---------------------------------------------------------------------------
// AdbDeadline, AdbHostConnection

AdbDeadline AdbDeadline::after(std::chrono::milliseconds budget) {
  return AdbDeadline{SteadyClock::now() + std::max(budget, std::chrono::milliseconds::zero()), budget};
}

AdbDeadline AdbDeadline::never() {
  return AdbDeadline{SteadyClock::time_point::max(), std::chrono::milliseconds::max()};
}

Result<AdbHostConnection> AdbHostConnection::open(const AdbEndpoint& endpoint, const AdbDeadline& deadline, int wake_fd,
                                                  bool* refused) {
  if (refused != nullptr) *refused = false;
  auto address = resolveNumeric(endpoint);
  if (!address.ok()) return address.error();
  const int fd = ::socket(address->storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return unavailable("socket: " + errnoText(errno));
  AdbHostConnection connection(fd, wake_fd);  // closes fd on every early return
  const std::string where = endpointText(endpoint);
  auto refusedError = [&] {
    if (refused != nullptr) *refused = true;
    return unavailable("adb server not running at " + where + " (connection refused)");
  };
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address->storage), address->length) != 0) {
    if (errno == ECONNREFUSED) return refusedError();
    if (errno != EINPROGRESS && errno != EINTR) return unavailable("connect to " + where + ": " + errnoText(errno));
    auto waited = waitFor(fd, POLLOUT, deadline, wake_fd);
    if (!waited.ok()) return waited.error();
    if (*waited == Wait::kWoken) return unavailable("interrupted");
    if (*waited == Wait::kTimeout) return unavailable(timedOut(deadline, "connecting to the adb server at " + where));
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == ECONNREFUSED) return refusedError();
    if (err != 0) return unavailable("connect to " + where + ": " + errnoText(err));
  }
  return connection;
}

AdbHostConnection::AdbHostConnection(AdbHostConnection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), wake_fd_(other.wake_fd_) {}

AdbHostConnection& AdbHostConnection::operator=(AdbHostConnection&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    wake_fd_ = other.wake_fd_;
  }
  return *this;
}

AdbHostConnection::~AdbHostConnection() {
  if (fd_ >= 0) ::close(fd_);
}

Status AdbHostConnection::sendRequest(std::string_view service, const AdbDeadline& deadline) {
  if (service.empty() || service.size() > kMaxRequestBytes) {
    return makeError(ErrorKind::kInvalid,
                     "request of " + std::to_string(service.size()) + " bytes (the protocol allows 1 to 65535)");
  }
  if (service.find('\0') != std::string_view::npos) return makeError(ErrorKind::kInvalid, "request contains a NUL");
  char header[5];
  std::snprintf(header, sizeof header, "%04zx", service.size());
  std::string frame(header, 4);
  frame.append(service);
  std::size_t sent = 0;
  while (sent < frame.size()) {
    const ssize_t n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto waited = waitFor(fd_, POLLOUT, deadline, wake_fd_);
      if (!waited.ok()) return waited.error();
      if (*waited == Wait::kWoken) return unavailable("interrupted");
      if (*waited == Wait::kTimeout) return unavailable(timedOut(deadline, "sending the request"));
      continue;
    }
    return unavailable("sending the request: " + errnoText(n < 0 ? errno : EPIPE));
  }
  return okStatus();
}

Status AdbHostConnection::readExact(char* out, std::size_t size, std::string_view what, const AdbDeadline& deadline) {
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::recv(fd_, out + got, size - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) {
      if (got == 0) return unavailable("adb server closed the connection before the " + std::string(what));
      return unavailable("adb server closed the connection after " + std::to_string(got) + " of " +
                         std::to_string(size) + " bytes of the " + std::string(what));
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return unavailable("reading the " + std::string(what) + ": " + errnoText(errno));
    }
    auto waited = waitFor(fd_, POLLIN, deadline, wake_fd_);
    if (!waited.ok()) return waited.error();
    if (*waited == Wait::kWoken) return unavailable("interrupted");
    if (*waited == Wait::kTimeout) return unavailable(timedOut(deadline, "waiting for the " + std::string(what)));
  }
  return okStatus();
}

Status AdbHostConnection::readStatus(const AdbDeadline& deadline) {
  char status[4];
  if (auto read = readExact(status, sizeof status, "status", deadline); !read.ok()) return read;
  const std::string_view word(status, sizeof status);
  if (word == "OKAY") return okStatus();
  if (word != "FAIL") return unavailable("unexpected status '" + printable(word) + "' from the adb server");
  auto message = readLengthPrefixed(kListCap, deadline);
  if (!message.ok()) return unavailable("FAIL without a readable message: " + message.error().message);
  const std::string text = printable(*message);
  return makeError(meansNotFound(text) ? ErrorKind::kNotFound : ErrorKind::kUnavailable, text);
}

Status AdbHostConnection::request(std::string_view service, const AdbDeadline& deadline) {
  if (auto sent = sendRequest(service, deadline); !sent.ok()) return sent;
  return readStatus(deadline);
}

Result<std::string> AdbHostConnection::readLengthPrefixed(std::size_t cap, const AdbDeadline& deadline) {
  char digits[4];
  if (auto read = readExact(digits, sizeof digits, "length", deadline); !read.ok()) return read.error();
  const auto length = parseHex4(std::string_view(digits, sizeof digits));
  if (!length) {
    return unavailable("malformed length '" + printable(std::string_view(digits, sizeof digits)) +
                       "' from the adb server (want 4 hex digits)");
  }
  if (*length > cap) {
    return unavailable("adb server announced " + std::to_string(*length) + " bytes; the limit here is " +
                       std::to_string(cap));
  }
  std::string payload(*length, '\0');
  if (auto read = readExact(payload.data(), payload.size(), "payload", deadline); !read.ok()) return read.error();
  return payload;
}

Result<std::string> AdbHostConnection::readUntilEof(std::size_t cap, const AdbDeadline& deadline) {
  std::string out;
  char buffer[16384];
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n > 0) {
      if (out.size() + static_cast<std::size_t>(n) > cap) {
        return unavailable("output exceeds the limit of " + std::to_string(cap) + " bytes");
      }
      out.append(buffer, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) return out;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return unavailable("reading the output: " + errnoText(errno));
    auto waited = waitFor(fd_, POLLIN, deadline, wake_fd_);
    if (!waited.ok()) return waited.error();
    if (*waited == Wait::kWoken) return unavailable("interrupted");
    if (*waited == Wait::kTimeout) {
      return unavailable(
          timedOut(deadline, "waiting for the end of the output (" + std::to_string(out.size()) + " bytes so far)"));
    }
  }
}

Status AdbHostConnection::waitReadable(const AdbDeadline& deadline) {
  auto waited = waitFor(fd_, POLLIN, deadline, wake_fd_);
  if (!waited.ok()) return waited.error();
  if (*waited == Wait::kWoken) return unavailable("interrupted");
  if (*waited == Wait::kTimeout) return unavailable(timedOut(deadline, "waiting for the adb server"));
  return okStatus();
}

// ---------------------------------------------------------------------------
// AdbClient

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

// ---------------------------------------------------------------------------
// startAdbServer

namespace {

// Drains what the pipe holds now (non-blocking) into `out`, keeping the first
// kMaxChildOutput bytes. False at EOF or on an error.
bool drainPipe(int fd, std::string& out) {
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      const auto room = kMaxChildOutput - std::min(out.size(), kMaxChildOutput);
      out.append(buffer, std::min(room, static_cast<std::size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

std::string exitText(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with status " + std::to_string(status);
}

// The adb child between fork and exec: only async-signal-safe system calls
// (the agent has other threads; nothing here may allocate). It clears the
// capabilities the agent holds for the exec shim (the unit's
// AmbientCapabilities=) so the adb server runs with none, resets the signal
// mask and dispositions, starts a session of its own, and keeps no
// descriptor of the agent's (the server it forks outlives the call: it must
// not hold the listening sockets, pidfds or store files).
[[noreturn]] void execAdbChild(const char* path, char* const argv[], char* const envp[], int out_fd) {
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct no_caps[2] = {};
  ::syscall(SYS_capset, &header, no_caps);  // and the inheritable, permitted, effective sets
  sigset_t none;
  sigemptyset(&none);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd < 0 || ::dup2(null_fd, STDIN_FILENO) < 0 || ::dup2(out_fd, STDOUT_FILENO) < 0 ||
      ::dup2(out_fd, STDERR_FILENO) < 0) {
    ::_exit(127);
  }
  ::syscall(SYS_close_range, STDERR_FILENO + 1, ~0U, 0);
  ::execve(path, argv, envp);
  static constexpr char kMessage[] = "exec of the adb binary failed\n";
  (void)!::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  ::_exit(127);
}

}  // namespace

Status startAdbServer(const std::string& adb_path, const AdbEndpoint& endpoint, std::chrono::milliseconds timeout,
                      const std::vector<std::string>& env_overrides) {
  return startAdbServer(adb_path, endpoint, timeout, env_overrides, -1);
}

Status startAdbServer(const std::string& adb_path, const AdbEndpoint& endpoint, std::chrono::milliseconds timeout,
                      const std::vector<std::string>& env_overrides, int wake_fd) {
  const std::string port = std::to_string(endpoint.port);
  const std::string what = "adb start-server on port " + port;
  if (adb_path.empty()) return makeError(ErrorKind::kInvalid, what + ": no adb binary configured");
  // The inherited environment minus the overridden names, then the overrides.
  std::vector<std::string> env;
  for (const auto& entry : env_overrides) {
    if (entry.find('=') == std::string::npos || entry.front() == '=') {
      return makeError(ErrorKind::kInvalid, what + ": environment entry '" + printable(entry) + "' is not K=V");
    }
  }
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('=') + 1);
    const bool overridden = std::any_of(env_overrides.begin(), env_overrides.end(),
                                        [&](const std::string& o) { return startsWith(o, name); });
    if (!overridden) env.emplace_back(entry);
  }
  env.insert(env.end(), env_overrides.begin(), env_overrides.end());
  std::vector<char*> envp;
  for (auto& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::string arg0 = adb_path, arg1 = "-P", arg2 = port, arg3 = "start-server";
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), arg3.data(), nullptr};

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return unavailable(what + ": pipe: " + errnoText(errno));
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);  // only our end: adb's writes may block
  // Checked here because the child can only report an exec failure as exit 127.
  if (::access(adb_path.c_str(), X_OK) != 0) {
    const int err = errno;
    ::close(out[0]);
    ::close(out[1]);
    return makeError(err == ENOENT ? ErrorKind::kNotFound : ErrorKind::kUnavailable,
                     what + ": cannot run " + adb_path + ": " + errnoText(err));
  }
  const pid_t pid = ::fork();
  if (pid == 0) execAdbChild(adb_path.c_str(), argv, envp.data(), out[1]);
  const int fork_errno = errno;
  ::close(out[1]);
  if (pid < 0) {
    ::close(out[0]);
    return unavailable(what + ": fork: " + errnoText(fork_errno));
  }

  // Wait for the exit, not for EOF: the forked server holds the pipe until it
  // redirects its own output.
  const auto deadline = AdbDeadline::after(timeout);
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  std::string output;
  bool pipe_open = true;
  int status = 0;
  // ECHILD: someone else reaped it (the daemon, as child subreaper, reaps
  // zombies it does not supervise). It has exited; its status is lost, and
  // the caller finds out by connecting.
  bool status_lost = false;
  std::optional<std::string> failure;
  for (;;) {
    const pid_t reaped = ::waitpid(pid, &status, WNOHANG);
    if (reaped == pid) break;
    if (reaped < 0 && errno == ECHILD) {
      status_lost = true;
      break;
    }
    if (reaped < 0 && errno != EINTR) {
      failure = "waitpid: " + errnoText(errno);
      break;
    }
    int wait_ms = pollTimeoutMs(deadline);
    if (wait_ms == 0 && SteadyClock::now() >= deadline.at) {
      failure = timedOut(deadline, "waiting for it");
      break;
    }
    if (pidfd < 0) wait_ms = std::min(wait_ms, 10);  // no pidfds (kernel < 5.3): poll the exit
    pollfd fds[3] = {{pipe_open ? out[0] : -1, POLLIN, 0}, {pidfd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (::poll(fds, 3, wait_ms) < 0 && errno != EINTR) {
      failure = "poll: " + errnoText(errno);
      break;
    }
    if (fds[2].revents != 0) {
      failure = "interrupted";
      break;
    }
    if (fds[0].revents != 0) pipe_open = drainPipe(out[0], output);
  }
  if (failure) {
    // Through the pidfd when there is one: if the child was reaped meanwhile
    // its pid may belong to someone else already.
    if (pidfd >= 0) {
      ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    } else {
      ::kill(pid, SIGKILL);
    }
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (pipe_open) drainPipe(out[0], output);
  ::close(out[0]);
  if (pidfd >= 0) ::close(pidfd);
  const std::string shown = output.empty() ? std::string() : "; output: " + printable(output);
  if (failure) return unavailable(what + ": " + *failure + shown);
  if (status_lost) return okStatus();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return unavailable(what + ": adb " + exitText(status) + shown);
  return okStatus();
}

}  // namespace phonefarm::phone
