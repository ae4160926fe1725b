// RFC 9112 rules the HTTP session applies to a request head before anything
// else sees it: which Transfer-Encoding lists are refused (request smuggling),
// whether a Host header is well-formed, how an absolute-form target becomes
// the origin-form path the router matches, and the Date header's format.
// Pure functions, so every case is unit-tested without a socket.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace phonefarm::http {

struct FramingError {
  int status;               // 400 or 501
  std::string_view detail;  // for the {"detail": ...} body
};

// `codings` are the values of every Transfer-Encoding field line, in order.
// Only `chunked` alone is accepted (RFC 9112 §6.1, §6.3): `chunked` anywhere
// but last, or more than once, is 400; any other coding (gzip, identity ...)
// is 501; Transfer-Encoding together with Content-Length, or in an HTTP/1.0
// request, is 400. nullopt = the framing is acceptable.
std::optional<FramingError> checkTransferEncoding(const std::vector<std::string_view>& field_values,
                                                  bool has_content_length, unsigned version);

// RFC 9112 §3.2: `hosts` are the values of every Host field line. HTTP/1.1
// needs exactly one; any version refuses two or a malformed one
// (uri-host [":" port]; an empty value is allowed).
std::optional<FramingError> checkHost(const std::vector<std::string_view>& hosts, unsigned version);

// RFC 9112 §3.2.2: "http://host:port/path?q" -> "/path?q" ("/" when the path
// is empty). Origin-form targets come back unchanged; nullopt for an
// absolute-form target whose scheme is not http(s) or whose authority is bad.
std::optional<std::string> toOriginForm(std::string_view target);

// IMF-fixdate (RFC 9110 §5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
std::string httpDate(std::chrono::system_clock::time_point when);

}  // namespace phonefarm::http
