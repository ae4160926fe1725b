// HttpResponse, parseResponse and the Beast parser plumbing of
// response_parser.hpp.
#include "agent/ctl/http_response.hpp"

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <cstdint>

#include "agent/ctl/response_parser.hpp"

namespace phonefarm::ctl {
namespace {

namespace http = boost::beast::http;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c); });
  return out;
}

}  // namespace

std::string HttpResponse::header(std::string_view lowercase_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lowercase_name) return v;
  }
  return "";
}

void limitParser(BeastResponseParser& parser, const HttpLimits& limits, bool head_request) {
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits.max_header_bytes, UINT32_MAX)));
  parser.body_limit(limits.max_body_bytes);
  parser.eager(true);
  if (head_request) parser.skip(true);
}

HttpResponse toHttpResponse(BeastResponseParser& parser, const HttpLimits& limits) {
  auto message = parser.release();
  HttpResponse r;
  r.status = static_cast<int>(message.result_int());
  if (r.status < 100 || r.status > 599) throw TransportError("bad HTTP status code in the agent's answer");
  r.reason = std::string(message.reason());
  for (const auto& field : message) {
    if (r.headers.size() >= limits.max_headers) throw TransportError("too many headers in the agent's answer");
    r.headers.emplace_back(lower(field.name_string()), std::string(field.value()));
  }
  r.body = std::move(message.body());
  return r;
}

std::string parseErrorText(const boost::beast::error_code& ec) {
  if (ec.category() != http::make_error_code(http::error::bad_field).category()) return "";
  if (ec == http::error::end_of_stream) return "the agent closed the connection without answering";
  if (ec == http::error::partial_message) return "the agent closed the connection in the middle of its response";
  if (ec == http::error::header_limit) return "the agent's response head is too large";
  if (ec == http::error::body_limit) return "the agent's response body is too large";
  if (ec == http::error::bad_version) return "the agent's answer is not an HTTP/1.x response";
  if (ec == http::error::bad_status) return "bad HTTP status code in the agent's answer";
  return "the agent's answer is not valid HTTP (" + ec.message() + ")";
}

HttpResponse parseResponse(std::string_view wire, bool head_request, const HttpLimits& limits) {
  for (;;) {
    BeastResponseParser parser;
    limitParser(parser, limits, head_request);
    boost::beast::error_code ec;
    if (wire.empty()) ec = http::error::end_of_stream;  // what http::read says for a close before any byte
    while (!ec && !parser.is_done()) {
      const std::size_t used = wire.empty() ? 0 : parser.put(boost::asio::buffer(wire.data(), wire.size()), ec);
      wire.remove_prefix(used);
      if (ec == http::error::need_more) ec = {};
      // No progress with everything given: the bytes end here, as at a close.
      if (!ec && used == 0 && !parser.is_done()) {
        parser.put_eof(ec);
        break;
      }
    }
    if (ec) throw TransportError(parseErrorText(ec).empty() ? ec.message() : parseErrorText(ec));
    if (parser.get().result_int() / 100 == 1) continue;  // an interim answer: the real one follows
    return toHttpResponse(parser, limits);
  }
}

}  // namespace phonefarm::ctl
