// HttpClient / RawConnection: see http_client.hpp.
#include "tests/support/http_client.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <cctype>
#include <cerrno>
#include <set>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace phonefarm::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view text) {
  const auto begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return "";
  const auto end = text.find_last_not_of(" \t\r");
  return std::string(text.substr(begin, end - begin + 1));
}

std::chrono::milliseconds remaining(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

bool methodSendsLength(const std::string& method) { return method == "POST" || method == "PUT" || method == "PATCH"; }

}  // namespace

std::string Response::header(std::string_view name) const {
  const auto it = headers.find(lowercase(name));
  return it == headers.end() ? "" : it->second;
}

boost::json::value Response::json() const {
  boost::system::error_code ec;
  auto value = boost::json::parse(body, ec);
  if (ec) {
    throw std::runtime_error("response body (status " + std::to_string(status) + ") is not JSON: " + ec.message() +
                             ": " + body.substr(0, 300));
  }
  return value;
}

RawConnection::RawConnection(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const auto service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    throw std::runtime_error("resolve " + host + ": " + ::gai_strerror(rc));
  }
  int last_errno = 0;
  int fd = -1;
  for (auto* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last_errno = errno;
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) throw std::system_error(last_errno, std::generic_category(), "connect " + host + ":" + service);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fd_ = fd;
}

RawConnection RawConnection::adopt(int fd) {
  RawConnection connection;
  connection.fd_ = fd;
  return connection;
}

RawConnection::RawConnection(RawConnection&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

RawConnection& RawConnection::operator=(RawConnection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

RawConnection::~RawConnection() { close(); }

void RawConnection::close() {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

bool RawConnection::trySendAll(std::string_view bytes) {
  while (!bytes.empty()) {
    // MSG_NOSIGNAL: a peer that closed must show up as an error, not SIGPIPE.
    const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return false;
    if (n < 0) throw std::system_error(errno, std::generic_category(), "send");
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void RawConnection::sendAll(std::string_view bytes) {
  if (!trySendAll(bytes)) throw std::system_error(EPIPE, std::generic_category(), "send: peer closed");
}

RawConnection::Recv RawConnection::recvSome(std::string& out, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    pollfd pfd{fd_, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(remaining(deadline).count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) throw std::system_error(errno, std::generic_category(), "poll");
    if (ready == 0) return Recv::kTimeout;
    char chunk[16384];
    const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != ECONNRESET) throw std::system_error(errno, std::generic_category(), "recv");
    if (n <= 0) return Recv::kClosed;
    out.append(chunk, static_cast<std::size_t>(n));
    return Recv::kData;
  }
}

bool RawConnection::waitClosed(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string discarded;
  for (;;) {
    switch (recvSome(discarded, remaining(deadline))) {
      case Recv::kClosed:
        return true;
      case Recv::kTimeout:
        return false;
      case Recv::kData:
        discarded.clear();
        break;
    }
  }
}

bool RawConnection::peerClosed() const {
  pollfd pfd{fd_, POLLIN, 0};
  if (::poll(&pfd, 1, 0) <= 0) return false;
  char byte;
  const auto n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

std::optional<Response> parseResponseHead(std::string_view head) {
  std::size_t line_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, line_end);
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1.") return std::nullopt;
  Response res;
  res.status = std::stoi(std::string(status_line.substr(9, 3)));
  while (line_end != std::string_view::npos && line_end < head.size()) {
    const auto start = line_end + 2;
    line_end = head.find("\r\n", start);
    const auto line =
        head.substr(start, line_end == std::string_view::npos ? std::string_view::npos : line_end - start);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    auto& slot = res.headers[lowercase(trim(line.substr(0, colon)))];
    slot = slot.empty() ? trim(line.substr(colon + 1)) : slot + ", " + trim(line.substr(colon + 1));
  }
  return res;
}

HttpClient::HttpClient(std::string host, std::uint16_t port) : host_(std::move(host)), port_(port) {}

void HttpClient::setDefaultHeader(std::string name, std::string value) {
  const auto key = lowercase(name);
  std::erase_if(default_headers_, [&](const auto& header) { return lowercase(header.first) == key; });
  default_headers_.emplace_back(std::move(name), std::move(value));
}

Response HttpClient::request(const std::string& method, const std::string& target, const std::string& body,
                             const Headers& headers) {
  const std::string what = method + " " + target;
  // A keep-alive connection the server closed while we were idle is replaced
  // before sending; nothing is re-sent after a send, so a POST never doubles.
  if (connection_ && connection_->peerClosed()) disconnect();
  if (!connection_) {
    connection_.emplace(host_, port_);
    ++connects_;
    pending_.clear();
  }

  std::set<std::string> given;  // lowercase names the request sets itself
  for (const auto& header : headers) given.insert(lowercase(header.first));
  std::string text = method + " " + target + " HTTP/1.1\r\n";
  auto add = [&](const std::string& name, const std::string& value) { text += name + ": " + value + "\r\n"; };
  if (!given.count("host")) add("Host", host_ + ":" + std::to_string(port_));
  for (const auto& [name, value] : default_headers_) {
    if (!given.count(lowercase(name))) add(name, value);
  }
  for (const auto& [name, value] : headers) add(name, value);
  if (!body.empty() && !given.count("content-type")) add("Content-Type", "application/json");
  if ((!body.empty() || methodSendsLength(method)) && !given.count("content-length") &&
      !given.count("transfer-encoding")) {
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  text += "\r\n";
  text += body;
  if (!connection_->trySendAll(text)) {
    disconnect();
    throw std::runtime_error(what + ": connection closed by the server while sending");
  }
  return readResponse(method, what);
}

Response HttpClient::readResponse(const std::string& method, const std::string& what) {
  const auto deadline = Clock::now() + timeout_;
  bool closed = false;
  auto fill = [&] {
    switch (connection_->recvSome(pending_, remaining(deadline))) {
      case RawConnection::Recv::kData:
        return;
      case RawConnection::Recv::kClosed:
        closed = true;
        return;
      case RawConnection::Recv::kTimeout:
        disconnect();
        throw std::runtime_error(what + ": no complete response within " + std::to_string(timeout_.count()) + " ms");
    }
  };

  std::size_t header_end;
  while ((header_end = pending_.find("\r\n\r\n")) == std::string::npos) {
    fill();
    if (closed) {
      disconnect();
      throw std::runtime_error(what + ": connection closed before a complete response header");
    }
  }

  const std::string_view head(pending_.data(), header_end);
  auto parsed = parseResponseHead(head);
  if (!parsed) {
    const auto status_line = std::string(head.substr(0, head.find("\r\n")));
    disconnect();
    throw std::runtime_error(what + ": bad status line: " + status_line);
  }
  Response res = std::move(*parsed);
  const bool http10 = head.starts_with("HTTP/1.0");
  pending_.erase(0, header_end + 4);

  const bool no_body = method == "HEAD" || res.status / 100 == 1 || res.status == 204 || res.status == 304;
  const auto connection = lowercase(res.header("connection"));
  bool must_close = connection == "close" || (http10 && connection != "keep-alive");
  if (!no_body) {
    if (lowercase(res.header("transfer-encoding")).find("chunked") != std::string::npos) {
      disconnect();
      throw std::runtime_error(what + ": chunked responses are not supported by this test client");
    }
    const auto length_text = res.header("content-length");
    if (!length_text.empty()) {
      const auto length = std::stoul(length_text);
      while (pending_.size() < length && !closed) fill();
      if (pending_.size() < length) {
        disconnect();
        throw std::runtime_error(what + ": connection closed in the middle of the body");
      }
      res.body = pending_.substr(0, length);
      pending_.erase(0, length);
    } else {
      while (!closed) fill();  // delimited by the close
      res.body = std::exchange(pending_, {});
      must_close = true;
    }
  }
  if (must_close || closed) disconnect();
  return res;
}

}  // namespace phonefarm::testing
