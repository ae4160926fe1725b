// A small blocking HTTP/1.1 client for phonefarmctl: plain POSIX sockets, one
// request per connection (Connection: close), every step bounded by one
// overall deadline (poll), and limits on what the peer may send. It reads
// Content-Length bodies (the agent always sends one) or, without one, up to
// the close; chunked transfer coding is refused. https:// URLs run the same
// code over OpenSSL on the non-blocking socket: TLS 1.2 or newer, the
// certificate verified against --cacert or the system store, and the URL's
// host name or IP address checked against it.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace phonefarm::ctl {

// The URL could not be parsed (a usage error).
class UrlError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// No usable HTTP response: resolve/connect failed, timed out, the peer closed
// early or sent something that is not HTTP within our limits.
class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// http[s]://host[:port][/base]; host is a name, an IPv4 literal or a
// bracketed IPv6 literal. The port defaults to 80 (http) or 443 (https).
struct Url {
  bool https = false;
  std::string host;  // without brackets
  std::uint16_t port = 80;
  std::string base_path;  // "" or "/prefix" without the trailing slash

  static Url parse(std::string_view text);  // throws UrlError
  std::string hostHeader() const;           // host[:port] (port only when not the default), IPv6 bracketed
  std::string hostPort() const;             // host:port, IPv6 bracketed (for messages)
};

struct TlsClientOptions {
  // PEM file of the CA certificate(s) to trust; "" = the system store.
  std::string ca_file;
};

struct HttpLimits {
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_headers = 100;
  std::size_t max_body_bytes = 64 * 1024 * 1024;
};

struct HttpResponse {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;

  // The first header of that (lowercase) name, "" when absent.
  std::string header(std::string_view lowercase_name) const;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Sends one request and reads the whole response before `timeout` from the
// call (TLS handshake included). `target` is the path and query (it is
// appended to url.base_path). Throws TransportError (a failed TLS handshake
// too: "TLS handshake with HOST:PORT failed: certificate verify failed
// (...)"); std::invalid_argument for a header with CR/LF.
HttpResponse httpRequest(const Url& url, std::string_view method, std::string_view target, std::string_view body,
                         const HeaderList& headers, std::chrono::milliseconds timeout, const HttpLimits& limits = {},
                         const TlsClientOptions& tls = {});

// Parses a complete response head (status line + headers, without the final
// empty line). Exposed for tests; throws TransportError.
HttpResponse parseResponseHead(std::string_view head, const HttpLimits& limits = {});

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string percentEncode(std::string_view text);

}  // namespace phonefarm::ctl
