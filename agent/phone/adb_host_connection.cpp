// The host-protocol framing; see adb_host_connection.hpp. The server and
// whatever answers on its port are not trusted: lengths are parsed strictly,
// payloads capped, and server text is made printable before it goes into an
// error or a log line.
#include "agent/phone/adb_host_connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <utility>

#include "agent/phone/adb_text.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::phone {
namespace {

using adb_text::endpointText;
using adb_text::meansNotFound;
using adb_text::parseHex4;
using adb_text::printable;
using adb_text::unavailable;
using os::errnoText;
using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kMaxRequestBytes = 0xffff;  // what 4 hex digits can say
constexpr std::size_t kMaxMessageBytes = 0xffff;  // a FAIL's message

std::string timedOut(const AdbDeadline& deadline, std::string_view what) {
  return adb_text::timedOut(deadline.budget, what);
}

enum class Wait { kReady, kTimeout, kWoken };

// Waits for `events` on fd (error and hang-up count as ready: the next call
// reports them), for wake_fd to turn readable, or for the deadline.
Result<Wait> waitFor(int fd, short events, const AdbDeadline& deadline, int wake_fd) {
  for (;;) {
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    const nfds_t count = wake_fd >= 0 ? 2 : 1;
    const int timeout = deadline.pollTimeoutMs();
    const int rc = ::poll(fds, count, timeout);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return makeError(ErrorKind::kInternal, "poll: " + errnoText(errno));
    }
    if (count == 2 && fds[1].revents != 0) return Wait::kWoken;
    if (fds[0].revents != 0) return Wait::kReady;
    if (timeout == 0 || deadline.passed()) return Wait::kTimeout;
  }
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

AdbDeadline AdbDeadline::after(std::chrono::milliseconds budget) {
  return AdbDeadline{SteadyClock::now() + std::max(budget, std::chrono::milliseconds::zero()), budget};
}

AdbDeadline AdbDeadline::never() {
  return AdbDeadline{SteadyClock::time_point::max(), std::chrono::milliseconds::max()};
}

bool AdbDeadline::passed() const { return !isNever() && SteadyClock::now() >= at; }

int AdbDeadline::pollTimeoutMs() const {
  if (isNever()) return -1;
  const auto left = at - SteadyClock::now();
  if (left <= SteadyClock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<std::chrono::milliseconds::rep>(ms, INT_MAX));
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
  auto message = readLengthPrefixed(kMaxMessageBytes, deadline);
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

}  // namespace phonefarm::phone
