// The agent's base URL as phonefarmctl takes it on --url (or derives from the
// config): scheme, host, port and an optional path prefix, checked strictly so
// that a typo is a usage error (exit 2) rather than a request to the wrong
// place. percentEncode builds the path segments and query values appended to it.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace phonefarm::ctl {

// The URL could not be parsed (a usage error).
class UrlError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
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

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string percentEncode(std::string_view text);

}  // namespace phonefarm::ctl
