// What phonefarmctl keeps of one HTTP answer from the agent (status, reason,
// headers with lowercased names, the whole body), the limits on what the
// agent may send, and TransportError for "no usable answer". The parsing is
// Boost.Beast's (response_parser.hpp); this header stays free of Beast so the
// commands do not compile it.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace phonefarm::ctl {

// No usable HTTP response: resolve/connect failed, timed out, the peer closed
// early or sent something that is not HTTP within our limits.
class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
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

// Parses one complete answer as it came off the wire, up to the close: the
// same parser, limits and error wording as a request over the network (1xx
// interim answers are skipped, chunked bodies decoded, bytes after the body
// ignored). `head_request`: the answer to a HEAD has no body. Throws
// TransportError.
HttpResponse parseResponse(std::string_view wire, bool head_request = false, const HttpLimits& limits = {});

}  // namespace phonefarm::ctl
