#include "agent/ctl/http_client.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

namespace phonefarm::ctl {
namespace {

using Clock = std::chrono::steady_clock;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c); });
  return out;
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool isTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool hasCtl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

int msLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<long long>(left, 1 << 30));
}

// Waits for `events` on fd; false on timeout. Throws on poll errors.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    int left = msLeft(deadline);
    if (left == 0) return false;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, left);
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) throw TransportError(std::string("poll: ") + std::strerror(errno));
  }
}

std::string errnoText(int err) { return std::strerror(err); }

// Connects to the first address that answers before the deadline.
int connectTo(const Url& url, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(url.port);
  // getaddrinfo has no deadline; a numeric host (the usual case) resolves at once.
  int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    throw TransportError("cannot resolve " + url.host + ": " +
                         (rc == EAI_SYSTEM ? errnoText(errno) : gai_strerror(rc)));
  }
  std::string last_error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      last_error = errnoText(errno);
      continue;
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    if (errno != EINPROGRESS) {
      last_error = errnoText(errno);
      ::close(fd);
      continue;
    }
    bool ready = false;
    try {
      ready = waitFor(fd, POLLOUT, deadline);
    } catch (...) {
      ::close(fd);
      ::freeaddrinfo(res);
      throw;
    }
    if (!ready) {
      last_error = "connection timed out";
      ::close(fd);
      break;  // the deadline is spent; no time for the other addresses
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    last_error = errnoText(err);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  throw TransportError(last_error);
}

void sendAll(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waitFor(fd, POLLOUT, deadline)) throw TransportError("timed out sending the request");
      continue;
    }
    throw TransportError("sending the request: " + errnoText(errno));
  }
}

// Appends up to `max` bytes; returns 0 on orderly close. Throws on timeout.
std::size_t recvSome(int fd, std::string& out, std::size_t max, Clock::time_point deadline) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buf, std::min(sizeof buf, max), 0);
    if (n >= 0) {
      out.append(buf, static_cast<std::size_t>(n));
      return static_cast<std::size_t>(n);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!waitFor(fd, POLLIN, deadline)) throw TransportError("timed out waiting for the response");
      continue;
    }
    throw TransportError("reading the response: " + errnoText(errno));
  }
}

bool parseDecimal(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

Url Url::parse(std::string_view text) {
  constexpr std::string_view kScheme = "http://";
  if (text.size() < kScheme.size() || lower(text.substr(0, kScheme.size())) != kScheme) {
    throw UrlError("the URL must start with http:// (got '" + std::string(text) + "')");
  }
  std::string_view rest = text.substr(kScheme.size());
  std::size_t slash = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (!path.empty() && path.front() != '/') throw UrlError("the URL must not carry a query or fragment");
  if (path.find_first_of("?#") != std::string_view::npos) throw UrlError("the URL must not carry a query or fragment");
  if (authority.find('@') != std::string_view::npos) throw UrlError("the URL must not carry user information");
  Url url;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw UrlError("unterminated [ in the URL's host");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw UrlError("junk after the URL's host");
      port_text = after.substr(1);
      if (port_text.empty()) throw UrlError("empty port in the URL");
    }
  } else {
    std::size_t colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) throw UrlError("empty port in the URL");
    }
  }
  if (url.host.empty()) throw UrlError("the URL has no host");
  for (char c : url.host) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '\\' || c == '[' || c == ']' || c == 0x7f) {
      throw UrlError("bad character in the URL's host");
    }
  }
  if (!port_text.empty()) {
    std::uint64_t port = 0;
    if (!parseDecimal(port_text, port) || port == 0 || port > 65535) throw UrlError("bad port in the URL");
    url.port = static_cast<std::uint16_t>(port);
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  for (char c : path) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) throw UrlError("bad character in the URL's path");
  }
  url.base_path = std::string(path);
  return url;
}

std::string Url::hostHeader() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != 80) h += ":" + std::to_string(port);
  return h;
}

std::string HttpResponse::header(std::string_view lowercase_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lowercase_name) return v;
  }
  return "";
}

std::string percentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

HttpResponse parseResponseHead(std::string_view head, const HttpLimits& limits) {
  HttpResponse r;
  std::size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  // HTTP/1.x SP 3DIGIT [SP reason]
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[8] != ' ' ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    throw TransportError("the agent's answer is not an HTTP/1.x response");
  }
  std::uint64_t code = 0;
  if (!parseDecimal(status_line.substr(9, 3), code) || code < 100 || code > 599) {
    throw TransportError("bad HTTP status code in the agent's answer");
  }
  r.status = static_cast<int>(code);
  if (status_line.size() > 13) r.reason = std::string(status_line.substr(13));
  std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
  while (!rest.empty()) {
    std::size_t end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    if (line.empty()) continue;
    if (r.headers.size() >= limits.max_headers) throw TransportError("too many headers in the agent's answer");
    std::size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos ||
        !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon), isTchar)) {
      throw TransportError("malformed header line in the agent's answer");
    }
    std::string_view value = trimOws(line.substr(colon + 1));
    if (hasCtl(value)) throw TransportError("malformed header value in the agent's answer");
    r.headers.emplace_back(lower(line.substr(0, colon)), std::string(value));
  }
  return r;
}

HttpResponse httpRequest(const Url& url, std::string_view method, std::string_view target, std::string_view body,
                         const HeaderList& headers, std::chrono::milliseconds timeout, const HttpLimits& limits) {
  if (hasCtl(method) || hasCtl(target) || method.find(' ') != std::string_view::npos ||
      target.find(' ') != std::string_view::npos) {
    throw std::invalid_argument("bad method or target");
  }
  std::string req;
  req.reserve(256 + body.size());
  req.append(method).append(" ").append(url.base_path).append(target).append(" HTTP/1.1\r\n");
  req.append("Host: ").append(url.hostHeader()).append("\r\n");
  req.append("User-Agent: phonefarmctl/" PHONEFARM_VERSION "\r\n");
  req.append("Accept: application/json\r\n");
  req.append("Connection: close\r\n");
  for (const auto& [k, v] : headers) {
    if (k.empty() || !std::all_of(k.begin(), k.end(), isTchar) || hasCtl(v)) {
      throw std::invalid_argument("bad request header '" + k + "'");
    }
    req.append(k).append(": ").append(v).append("\r\n");
  }
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    req.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  req.append("\r\n").append(body);

  const auto deadline = Clock::now() + timeout;
  Fd fd(connectTo(url, deadline));
  sendAll(fd.get(), req, deadline);

  std::string buf;
  for (;;) {
    // Read the head; skip interim (1xx) responses.
    std::size_t head_end;
    while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (buf.size() > limits.max_header_bytes) throw TransportError("the agent's response head is too large");
      if (recvSome(fd.get(), buf, limits.max_header_bytes + 4 - std::min(buf.size(), limits.max_header_bytes),
                   deadline) == 0) {
        throw TransportError(buf.empty() ? "the agent closed the connection without answering"
                                         : "the agent closed the connection in the middle of its response");
      }
    }
    if (head_end > limits.max_header_bytes) throw TransportError("the agent's response head is too large");
    HttpResponse r = parseResponseHead(std::string_view(buf).substr(0, head_end), limits);
    buf.erase(0, head_end + 4);
    if (r.status >= 100 && r.status < 200) continue;

    if (!r.header("transfer-encoding").empty()) {
      throw TransportError("the agent sent a chunked (Transfer-Encoding) response, which phonefarmctl does not read");
    }
    std::optional<std::uint64_t> length;
    for (const auto& [k, v] : r.headers) {
      if (k != "content-length") continue;
      std::uint64_t n = 0;
      if (!parseDecimal(v, n)) throw TransportError("bad Content-Length in the agent's answer");
      if (length && *length != n) throw TransportError("conflicting Content-Length headers in the agent's answer");
      length = n;
    }
    const bool no_body = method == "HEAD" || r.status == 204 || r.status == 304;
    if (no_body) return r;
    if (length) {
      if (*length > limits.max_body_bytes) throw TransportError("the agent's response body is too large");
      if (buf.size() > *length) buf.resize(*length);  // ignore anything past the body
      r.body = std::move(buf);
      while (r.body.size() < *length) {
        if (recvSome(fd.get(), r.body, *length - r.body.size(), deadline) == 0) {
          throw TransportError("the agent closed the connection in the middle of its response");
        }
      }
      return r;
    }
    // No length: the body ends at the close.
    r.body = std::move(buf);
    for (;;) {
      if (r.body.size() > limits.max_body_bytes) throw TransportError("the agent's response body is too large");
      if (recvSome(fd.get(), r.body, limits.max_body_bytes + 1 - r.body.size(), deadline) == 0) return r;
    }
  }
}

}  // namespace phonefarm::ctl
