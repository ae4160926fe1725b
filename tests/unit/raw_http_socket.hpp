// TestSocket: a blocking loopback TCP client with deadlines that speaks just
// enough HTTP/1.1 (Content-Length framed responses) to test HttpServer byte by
// byte. Header-only and test-local: unit tests do not link tests/support, and
// this one needs to send exactly what a broken or slow client would.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace phonefarm::http::test {

using Clock = std::chrono::steady_clock;

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// Blocking loopback TCP client with deadlines; just enough HTTP to read
// Content-Length framed responses (all this server sends).
class TestSocket {
 public:
  static std::optional<TestSocket> tryConnect(std::uint16_t port, int* error = nullptr) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const auto addr = loopback(port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      if (error) *error = errno;
      ::close(fd);
      return std::nullopt;
    }
    return TestSocket(fd);
  }
  static TestSocket connectTo(std::uint16_t port) {
    auto s = tryConnect(port);
    if (!s) throw std::runtime_error("connect failed");
    return std::move(*s);
  }
  // A socket to connect later with connectLater(port).
  static TestSocket socketOnly() { return TestSocket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)); }
  bool connectLater(std::uint16_t port) {
    const auto addr = loopback(port);
    return ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  }

  TestSocket(TestSocket&& other) noexcept : fd_(std::exchange(other.fd_, -1)), buffer_(std::move(other.buffer_)) {}
  TestSocket& operator=(TestSocket&&) = delete;
  ~TestSocket() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool sendAll(std::string_view bytes) {
    while (!bytes.empty()) {
      const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads one response; nullopt if the deadline passes or the peer closes first.
  std::optional<RawResponse> readResponse(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    const auto deadline = Clock::now() + timeout;
    std::size_t header_end;
    while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (fill(deadline) != Fill::kData) return std::nullopt;
    }
    RawResponse res;
    std::istringstream head(buffer_.substr(0, header_end));
    std::string line;
    std::getline(head, line);
    if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) return std::nullopt;
    res.status = std::stoi(line.substr(9, 3));
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      res.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    const std::size_t length = std::stoul(res.header("content-length").empty() ? "0" : res.header("content-length"));
    while (buffer_.size() < header_end + 4 + length) {
      if (fill(deadline) != Fill::kData) return std::nullopt;
    }
    res.body = buffer_.substr(header_end + 4, length);
    buffer_.erase(0, header_end + 4 + length);
    return res;
  }

  std::optional<RawResponse> roundtrip(const std::string& request) {
    if (!sendAll(request)) return std::nullopt;
    return readResponse();
  }

  // True when the peer closes (FIN or RST) before the timeout; data that
  // arrives meanwhile is kept for readResponse().
  bool waitClosed(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      switch (fill(deadline)) {
        case Fill::kClosed:
          return true;
        case Fill::kTimeout:
          return false;
        case Fill::kData:
          break;
      }
    }
  }

 private:
  enum class Fill { kData, kClosed, kTimeout };
  explicit TestSocket(int fd) : fd_(fd) {}
  static sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
  }

  Fill fill(Clock::time_point deadline) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() < 0) return Fill::kTimeout;
      pollfd pfd{fd_, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) return Fill::kTimeout;
      char chunk[8192];
      const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Fill::kClosed;  // 0 = FIN, <0 = ECONNRESET
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return Fill::kData;
    }
  }

  int fd_;
  std::string buffer_;
};

}  // namespace phonefarm::http::test
