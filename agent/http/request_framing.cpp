// See request_framing.hpp.
#include "agent/http/request_framing.hpp"

#include <boost/beast/core/string.hpp>
#include <cstdio>
#include <ctime>

#include "common/hex_digit.hpp"

namespace phonefarm::http {
namespace {

bool isSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
  return s;
}

using boost::beast::iequals;

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isHex(char c) { return hexDigitValue(c) >= 0; }

// RFC 3986 reg-name / IPv4address characters: unreserved, pct-encoded, sub-delims.
bool isRegNameChar(char c) {
  if (isAlpha(c) || isDigit(c)) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
      return true;
    default:
      return false;
  }
}

// uri-host [":" port] (RFC 9110 §7.2); IPv6 and IPvFuture literals in brackets.
bool isValidAuthority(std::string_view a) {
  std::string_view host = a;
  std::string_view port;
  if (!a.empty() && a.front() == '[') {
    const auto close = a.find(']');
    if (close == std::string_view::npos) return false;
    host = a.substr(1, close - 1);
    if (host.empty()) return false;
    for (char c : host) {
      if (!isHex(c) && c != ':' && c != '.' && !(c == 'v' || c == 'V') && !isRegNameChar(c)) return false;
    }
    std::string_view rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
    }
  } else {
    const auto colon = a.rfind(':');
    if (colon != std::string_view::npos) {
      host = a.substr(0, colon);
      port = a.substr(colon + 1);
    }
    for (std::size_t i = 0; i < host.size(); ++i) {
      const char c = host[i];
      if (c == '%') {
        if (i + 2 >= host.size() || !isHex(host[i + 1]) || !isHex(host[i + 2])) return false;
        i += 2;
        continue;
      }
      if (!isRegNameChar(c)) return false;
    }
  }
  if (port.size() > 5) return false;
  for (char c : port) {
    if (!isDigit(c)) return false;
  }
  return true;
}

}  // namespace

std::optional<FramingError> checkTransferEncoding(const std::vector<std::string_view>& field_values,
                                                  bool has_content_length, unsigned version) {
  if (field_values.empty()) return std::nullopt;
  if (has_content_length) return FramingError{400, "Transfer-Encoding and Content-Length together are refused"};
  if (version < 11) return FramingError{400, "Transfer-Encoding is not allowed in an HTTP/1.0 request"};
  std::vector<std::string_view> codings;
  for (std::string_view value : field_values) {
    while (true) {
      const auto comma = value.find(',');
      // A coding may carry parameters ("gzip;q=1"): the name is what counts.
      std::string_view element = trim(value.substr(0, comma));
      element = trim(element.substr(0, element.find(';')));
      if (!element.empty()) codings.push_back(element);
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  if (codings.empty()) return FramingError{400, "Empty Transfer-Encoding"};
  for (std::size_t i = 0; i < codings.size(); ++i) {
    if (iequals(codings[i], "chunked") && i + 1 != codings.size()) {
      return FramingError{400, "chunked must be the last and only transfer coding"};
    }
  }
  for (std::string_view coding : codings) {
    if (!iequals(coding, "chunked")) return FramingError{501, "Transfer coding not implemented: only chunked is"};
  }
  return std::nullopt;  // exactly one coding, chunked
}

std::optional<FramingError> checkHost(const std::vector<std::string_view>& hosts, unsigned version) {
  if (hosts.size() > 1) return FramingError{400, "More than one Host header"};
  if (hosts.empty()) {
    if (version >= 11) return FramingError{400, "Missing Host header"};
    return std::nullopt;
  }
  const std::string_view host = trim(hosts.front());
  if (!host.empty() && !isValidAuthority(host)) return FramingError{400, "Invalid Host header"};
  return std::nullopt;
}

std::optional<std::string> toOriginForm(std::string_view target) {
  if (target.empty() || target.front() == '/' || target == "*") return std::string(target);
  const auto scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) return std::nullopt;
  const std::string_view scheme = target.substr(0, scheme_end);
  if (!iequals(scheme, "http") && !iequals(scheme, "https")) return std::nullopt;
  std::string_view rest = target.substr(scheme_end + 3);
  const auto path_start = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, path_start);
  if (authority.empty() || authority.find('@') != std::string_view::npos || !isValidAuthority(authority)) {
    return std::nullopt;
  }
  if (path_start == std::string_view::npos) return std::string("/");
  std::string out(rest.substr(path_start));
  if (out.front() == '?') out.insert(out.begin(), '/');
  return out;
}

std::string httpDate(std::chrono::system_clock::time_point when) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7], tm.tm_mday,
                              kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
}

}  // namespace phonefarm::http
