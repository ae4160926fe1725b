// Fuzz target: the bytes are an HTTP/1.1 request as a client could send it.
// They go through the same Beast parser settings as the server (header and
// body limits), then the target's query and the body through every request
// validator; the raw bytes also go straight to the validators so the JSON
// paths are reached without valid framing. Any crash, sanitizer report or
// exception escaping a validator is a bug.
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/api/request_validation.hpp"

namespace {

bool knownPhone(std::string_view id) { return id == "phone_01"; }

void validateAll(std::string_view body) {
  (void)phonefarm::api::parseCancelRequest(body);
  (void)phonefarm::api::parseLegacyCancelRequest(body);
  (void)phonefarm::api::parseSubmitRequest(body, knownPhone);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  validateAll(input);
  (void)phonefarm::api::parseListQuery(input);

  namespace http = boost::beast::http;
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(64 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  std::size_t offset = 0;
  while (offset < size && !parser.is_done()) {
    const std::size_t used = parser.put(boost::asio::buffer(data + offset, size - offset), ec);
    if (ec || used == 0) break;
    offset += used;
  }
  if (!ec && parser.is_done()) {
    const auto& req = parser.get();
    const std::string_view target = req.target();
    const auto q = target.find('?');
    if (q != std::string_view::npos) (void)phonefarm::api::parseListQuery(target.substr(q + 1));
    validateAll(req.body());
  }
  return 0;
}
