// Fuzz target: the bytes are an HTTP/1.1 request as a client could send it.
// They go through the same Beast parser settings as the server (header and
// body limits), then the target's query and the body through every request
// validator; the raw bytes also go straight to the validators so the JSON
// paths are reached without valid framing. A parsed header also goes through
// the session's RFC 9112 checks (Transfer-Encoding, Host, the target's form)
// and the router's path decoding. Any crash, sanitizer report or
// exception escaping a validator is a bug.
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "agent/api/request_validation.hpp"
#include "agent/http/request_framing.hpp"

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
  if (!ec && parser.is_header_done()) {
    const auto& head = parser.get();
    std::vector<std::string_view> codings;
    for (auto [it, end] = head.equal_range(http::field::transfer_encoding); it != end; ++it)
      codings.push_back(it->value());
    std::vector<std::string_view> hosts;
    for (auto [it, end] = head.equal_range(http::field::host); it != end; ++it) hosts.push_back(it->value());
    (void)phonefarm::http::checkTransferEncoding(codings, head.find(http::field::content_length) != head.end(),
                                                 head.version());
    (void)phonefarm::http::checkHost(hosts, head.version());
    if (auto origin = phonefarm::http::toOriginForm(head.target())) {
      (void)phonefarm::api::percentDecode(std::string_view(*origin).substr(0, origin->find('?')), false);
    }
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
