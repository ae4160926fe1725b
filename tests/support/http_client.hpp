// A small synchronous HTTP/1.1 client over POSIX sockets for integration
// tests that drive the real daemon. Deliberately not Beast: test binaries stay
// cheap to compile, and RawConnection lets a test send exactly the bytes a
// broken or slow client would. Every receive has a deadline; nothing hangs.
#pragma once

#include <boost/json/value.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace phonefarm::testing {

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;

  // Case-insensitive; "" when absent.
  std::string header(std::string_view name) const;
  // Parses the body; throws std::runtime_error (quoting the body) if it is not JSON.
  boost::json::value json() const;
};

// Parses a response's status line and header fields (`head`: up to, not
// including, the blank line). nullopt when the status line is not HTTP/1.x.
// Names are lowercased; a repeated field's values are joined with ", ".
std::optional<Response> parseResponseHead(std::string_view head);

// One TCP connection with deadline-bounded I/O. Errors throw std::system_error.
class RawConnection {
 public:
  enum class Recv { kData, kClosed, kTimeout };

  RawConnection(const std::string& host, std::uint16_t port);
  // Takes ownership of a socket, connected or not (a test that must hold the
  // descriptor before it can connect).
  static RawConnection adopt(int fd);

  RawConnection(RawConnection&& other) noexcept;
  RawConnection& operator=(RawConnection&& other) noexcept;
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  ~RawConnection();

  void sendAll(std::string_view bytes);
  // Like sendAll, but reports a peer that has gone away as false.
  bool trySendAll(std::string_view bytes);
  // Appends whatever arrives (one recv) to `out`. kClosed on FIN or RST.
  Recv recvSome(std::string& out, std::chrono::milliseconds timeout);
  // True when the peer closes before the timeout; data that arrives meanwhile
  // is discarded.
  bool waitClosed(std::chrono::milliseconds timeout);
  // The peer has closed and nothing is left to read (checked without blocking).
  bool peerClosed() const;
  void close();
  bool isOpen() const { return fd_ >= 0; }
  int fd() const { return fd_; }

 private:
  RawConnection() = default;
  int fd_ = -1;
};

class HttpClient {
 public:
  using Response = testing::Response;
  // Sent in order; a name given here replaces a default header of that name.
  using Headers = std::vector<std::pair<std::string, std::string>>;

  HttpClient(std::string host, std::uint16_t port);

  // Sent with every request unless the request sets the same header.
  void setDefaultHeader(std::string name, std::string value);
  void setBearerToken(const std::string& token) { setDefaultHeader("Authorization", "Bearer " + token); }
  // How long to wait for a complete response (default 10 s).
  void setTimeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  // One request on the persistent keep-alive connection; reconnects first if
  // the server has closed it. A body gets `Content-Type: application/json`
  // unless `headers` says otherwise. Throws std::runtime_error on timeout or
  // if the connection breaks mid-response.
  Response request(const std::string& method, const std::string& target, const std::string& body = "",
                   const Headers& headers = {});
  Response get(const std::string& target, const Headers& headers = {}) { return request("GET", target, "", headers); }
  Response post(const std::string& target, const std::string& body, const Headers& headers = {}) {
    return request("POST", target, body, headers);
  }

  void disconnect() {
    connection_.reset();
    pending_.clear();
  }
  // How many TCP connections this client has opened so far.
  int connectCount() const { return connects_; }

 private:
  Response readResponse(const std::string& method, const std::string& what);

  std::string host_;
  std::uint16_t port_;
  std::chrono::milliseconds timeout_{10'000};
  Headers default_headers_;
  std::optional<RawConnection> connection_;
  std::string pending_;  // bytes received beyond the last response
  int connects_ = 0;
};

}  // namespace phonefarm::testing
