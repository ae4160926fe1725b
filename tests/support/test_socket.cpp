// TestSocket: see test_socket.hpp.
#include "tests/support/test_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace phonefarm::testing {
namespace {

using Clock = std::chrono::steady_clock;

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

}  // namespace

std::optional<TestSocket> TestSocket::tryConnect(std::uint16_t port, int* error) {
  auto socket = socketOnly();
  if (!socket.connectLater(port)) {
    if (error != nullptr) *error = errno;
    return std::nullopt;
  }
  return socket;
}

TestSocket TestSocket::connectTo(std::uint16_t port) {
  int error = 0;
  auto socket = tryConnect(port, &error);
  if (!socket) throw std::runtime_error("connect 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(error));
  return std::move(*socket);
}

TestSocket TestSocket::socketOnly() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  return TestSocket(RawConnection::adopt(fd));
}

bool TestSocket::connectLater(std::uint16_t port) {
  const auto addr = loopback(port);
  return ::connect(connection_.fd(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

bool TestSocket::sendAll(std::string_view bytes) {
  try {
    return connection_.trySendAll(bytes);
  } catch (const std::system_error&) {
    return false;
  }
}

RawConnection::Recv TestSocket::fill(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() < 0) return RawConnection::Recv::kTimeout;
  try {
    return connection_.recvSome(buffer_, left);
  } catch (const std::system_error&) {
    return RawConnection::Recv::kClosed;
  }
}

std::optional<Response> TestSocket::readResponse(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::size_t header_end;
  while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (fill(deadline) != RawConnection::Recv::kData) return std::nullopt;
  }
  auto res = parseResponseHead(std::string_view(buffer_).substr(0, header_end));
  if (!res) return std::nullopt;
  const auto length_text = res->header("content-length");
  const std::size_t length = length_text.empty() ? 0 : std::stoul(length_text);
  while (buffer_.size() < header_end + 4 + length) {
    if (fill(deadline) != RawConnection::Recv::kData) return std::nullopt;
  }
  res->body = buffer_.substr(header_end + 4, length);
  buffer_.erase(0, header_end + 4 + length);
  return res;
}

std::optional<Response> TestSocket::roundtrip(const std::string& request) {
  if (!sendAll(request)) return std::nullopt;
  return readResponse();
}

bool TestSocket::waitClosed(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    switch (fill(deadline)) {
      case RawConnection::Recv::kClosed:
        return true;
      case RawConnection::Recv::kTimeout:
        return false;
      case RawConnection::Recv::kData:
        break;
    }
  }
}

}  // namespace phonefarm::testing
