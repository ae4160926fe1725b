// Url::parse and percentEncode; see url.hpp.
#include "agent/ctl/url.hpp"

#include <algorithm>
#include <charconv>

namespace phonefarm::ctl {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c); });
  return out;
}

bool parsePort(std::string_view s, std::uint16_t& out) {
  std::uint64_t value = 0;
  if (s.empty() || s.size() > 19) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || p != s.data() + s.size() || value == 0 || value > 65535) return false;
  out = static_cast<std::uint16_t>(value);
  return true;
}

bool startsWithScheme(std::string_view text, std::string_view scheme) {
  return text.size() >= scheme.size() && lower(text.substr(0, scheme.size())) == scheme;
}

}  // namespace

Url Url::parse(std::string_view text) {
  constexpr std::string_view kHttp = "http://";
  constexpr std::string_view kHttps = "https://";
  Url url;
  std::string_view rest;
  if (startsWithScheme(text, kHttp)) {
    rest = text.substr(kHttp.size());
  } else if (startsWithScheme(text, kHttps)) {
    rest = text.substr(kHttps.size());
    url.https = true;
    url.port = 443;
  } else {
    throw UrlError("the URL must start with http:// or https:// (got '" + std::string(text) + "')");
  }
  const std::size_t slash = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (path.find_first_of("?#") != std::string_view::npos) throw UrlError("the URL must not carry a query or fragment");
  if (authority.find('@') != std::string_view::npos) throw UrlError("the URL must not carry user information");
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw UrlError("unterminated [ in the URL's host");
    url.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw UrlError("junk after the URL's host");
      port_text = after.substr(1);
      has_port = true;
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      has_port = true;
    }
  }
  if (url.host.empty()) throw UrlError("the URL has no host");
  for (char c : url.host) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '\\' || c == '[' || c == ']' || c == 0x7f) {
      throw UrlError("bad character in the URL's host");
    }
  }
  if (has_port) {
    if (port_text.empty()) throw UrlError("empty port in the URL");
    if (!parsePort(port_text, url.port)) throw UrlError("bad port in the URL");
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

}  // namespace phonefarm::ctl
