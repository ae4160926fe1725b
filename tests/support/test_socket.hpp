// TestSocket: a loopback RawConnection with a receive buffer that reads one
// Content-Length framed response at a time. For the server tests that must
// send exactly the bytes a broken or slow client would (pipelining, partial
// requests, a socket made before the descriptor limit drops). Failures are
// answers (false, nullopt), not exceptions, so a test can assert on them.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "tests/support/http_client.hpp"

namespace phonefarm::testing {

class TestSocket {
 public:
  // Connects to 127.0.0.1:port; on failure nullopt, with errno in `*error`.
  static std::optional<TestSocket> tryConnect(std::uint16_t port, int* error = nullptr);
  // As tryConnect, but throws std::runtime_error on failure.
  static TestSocket connectTo(std::uint16_t port);
  // A socket to connect later with connectLater(port).
  static TestSocket socketOnly();
  bool connectLater(std::uint16_t port);

  bool sendAll(std::string_view bytes);
  // Reads one response; nullopt if the deadline passes or the peer closes first.
  std::optional<Response> readResponse(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  std::optional<Response> roundtrip(const std::string& request);
  // True when the peer closes (FIN or RST) before the timeout; data that
  // arrives meanwhile is kept for readResponse().
  bool waitClosed(std::chrono::milliseconds timeout);

 private:
  explicit TestSocket(RawConnection connection) : connection_(std::move(connection)) {}
  RawConnection::Recv fill(std::chrono::steady_clock::time_point deadline);

  RawConnection connection_;
  std::string buffer_;
};

}  // namespace phonefarm::testing
