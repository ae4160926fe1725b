#include "agent/ctl/http_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
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

void sendAllPlain(int fd, std::string_view data, Clock::time_point deadline) {
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
std::size_t recvSomePlain(int fd, std::string& out, std::size_t max, Clock::time_point deadline) {
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

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

// OpenSSL writes to the socket with write(2), which raises SIGPIPE when the
// agent has gone; send(MSG_NOSIGNAL) is not available through it. Block the
// signal for the duration of a TLS exchange and swallow one it raised.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;
  ~SigpipeBlock() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

// The most specific reason OpenSSL queued; empties the queue.
std::string sslReason() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "";
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : "error " + std::to_string(code);
}

bool isIpLiteral(const std::string& host) {
  in6_addr a6{};
  in_addr a4{};
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// Why an SSL call failed, in words, for `ret` and its SSL_get_error code.
std::string sslFailure(SSL* ssl, int ret, int err) {
  const long verify = SSL_get_verify_result(ssl);
  std::string reason = sslReason();
  if (verify != X509_V_OK && (reason.empty() || reason == "certificate verify failed")) {
    return std::string("certificate verify failed (") + X509_verify_cert_error_string(verify) + ")";
  }
  if (!reason.empty()) return reason;
  if (err == SSL_ERROR_SYSCALL) {
    if (ret == 0 || errno == 0) return "the agent closed the connection";
    return errnoText(errno);
  }
  if (err == SSL_ERROR_ZERO_RETURN) return "the agent closed the connection";
  return "error " + std::to_string(err);
}

// One connected socket, plain or TLS; all I/O bounded by the caller's deadline.
class Connection {
 public:
  explicit Connection(int fd) : fd_(fd) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    // close_notify, best effort and without waiting: the body is
    // Content-Length framed, so the agent does not need it.
    if (ssl_) SSL_shutdown(ssl_.get());
  }

  void startTls(const Url& url, const TlsClientOptions& options, Clock::time_point deadline) {
    ERR_clear_error();
    const std::string where = "TLS handshake with " + url.hostPort() + " failed: ";
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) throw TransportError(where + "cannot create an OpenSSL context (" + sslReason() + ")");
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    // The body is Content-Length framed: a missing close_notify is not truncation.
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    const int loaded = options.ca_file.empty()
                           ? SSL_CTX_set_default_verify_paths(ctx.get())
                           : SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr);
    if (loaded != 1) {
      throw TransportError("cannot load CA certificates from " +
                           (options.ca_file.empty() ? std::string("the system store") : options.ca_file) + ": " +
                           sslReason());
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    ssl_.reset(SSL_new(ctx.get()));  // holds its own reference to ctx
    if (!ssl_) throw TransportError(where + "cannot create an OpenSSL session (" + sslReason() + ")");
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (isIpLiteral(url.host)) {
      if (X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str()) != 1) {
        throw TransportError(where + "bad IP address " + url.host);
      }
    } else {
      if (X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), url.host.size()) != 1 ||
          SSL_set_tlsext_host_name(ssl_.get(), url.host.c_str()) != 1) {
        throw TransportError(where + "bad host name " + url.host);
      }
    }
    SSL_set_fd(ssl_.get(), fd_.get());
    for (;;) {
      const int r = SSL_connect(ssl_.get());
      if (r == 1) return;
      const int err = SSL_get_error(ssl_.get(), r);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        if (!waitFor(fd_.get(), err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
          ERR_clear_error();
          throw TransportError("TLS handshake with " + url.hostPort() + " timed out");
        }
        continue;
      }
      std::string why = sslFailure(ssl_.get(), r, err);
      // What OpenSSL says when the agent answered in plain HTTP.
      if (why == "wrong version number") why += " (the agent does not speak TLS on this port; try http://)";
      throw TransportError(where + why);
    }
  }

  void sendAll(std::string_view data, Clock::time_point deadline) {
    if (!ssl_) return sendAllPlain(fd_.get(), data, deadline);
    while (!data.empty()) {
      const int chunk = static_cast<int>(std::min<std::size_t>(data.size(), 1 << 20));
      errno = 0;
      const int n = SSL_write(ssl_.get(), data.data(), chunk);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      const int err = SSL_get_error(ssl_.get(), n);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        if (!waitFor(fd_.get(), err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
          throw TransportError("timed out sending the request");
        }
        continue;  // same buffer, same length, as OpenSSL requires
      }
      throw TransportError("sending the request: " + sslFailure(ssl_.get(), n, err));
    }
  }

  // Appends up to `max` bytes; returns 0 on orderly close. Throws on timeout.
  std::size_t recvSome(std::string& out, std::size_t max, Clock::time_point deadline) {
    if (!ssl_) return recvSomePlain(fd_.get(), out, max, deadline);
    char buf[16384];
    for (;;) {
      errno = 0;
      const int n = SSL_read(ssl_.get(), buf, static_cast<int>(std::min(sizeof buf, max)));
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
        return static_cast<std::size_t>(n);
      }
      const int err = SSL_get_error(ssl_.get(), n);
      if (err == SSL_ERROR_ZERO_RETURN) return 0;
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        if (!waitFor(fd_.get(), err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
          throw TransportError("timed out waiting for the response");
        }
        continue;
      }
      throw TransportError("reading the response: " + sslFailure(ssl_.get(), n, err));
    }
  }

 private:
  Fd fd_;
  SslPtr ssl_;  // declared after fd_: freed before the socket is closed
};

bool parseDecimal(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

Url Url::parse(std::string_view text) {
  constexpr std::string_view kHttp = "http://";
  constexpr std::string_view kHttps = "https://";
  Url url;
  std::string_view rest;
  if (text.size() >= kHttp.size() && lower(text.substr(0, kHttp.size())) == kHttp) {
    rest = text.substr(kHttp.size());
  } else if (text.size() >= kHttps.size() && lower(text.substr(0, kHttps.size())) == kHttps) {
    rest = text.substr(kHttps.size());
    url.https = true;
    url.port = 443;
  } else {
    throw UrlError("the URL must start with http:// or https:// (got '" + std::string(text) + "')");
  }
  std::size_t slash = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (!path.empty() && path.front() != '/') throw UrlError("the URL must not carry a query or fragment");
  if (path.find_first_of("?#") != std::string_view::npos) throw UrlError("the URL must not carry a query or fragment");
  if (authority.find('@') != std::string_view::npos) throw UrlError("the URL must not carry user information");
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
  if (port != (https ? 443 : 80)) h += ":" + std::to_string(port);
  return h;
}

std::string Url::hostPort() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
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
                         const HeaderList& headers, std::chrono::milliseconds timeout, const HttpLimits& limits,
                         const TlsClientOptions& tls) {
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
  std::optional<SigpipeBlock> no_sigpipe;
  if (url.https) no_sigpipe.emplace();
  Connection conn(connectTo(url, deadline));
  if (url.https) conn.startTls(url, tls, deadline);
  conn.sendAll(req, deadline);

  std::string buf;
  for (;;) {
    // Read the head; skip interim (1xx) responses.
    std::size_t head_end;
    while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (buf.size() > limits.max_header_bytes) throw TransportError("the agent's response head is too large");
      if (conn.recvSome(buf, limits.max_header_bytes + 4 - std::min(buf.size(), limits.max_header_bytes), deadline) ==
          0) {
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
        if (conn.recvSome(r.body, *length - r.body.size(), deadline) == 0) {
          throw TransportError("the agent closed the connection in the middle of its response");
        }
      }
      return r;
    }
    // No length: the body ends at the close.
    r.body = std::move(buf);
    for (;;) {
      if (r.body.size() > limits.max_body_bytes) throw TransportError("the agent's response body is too large");
      if (conn.recvSome(r.body, limits.max_body_bytes + 1 - r.body.size(), deadline) == 0) return r;
    }
  }
}

}  // namespace phonefarm::ctl
