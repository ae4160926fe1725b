// The Boost.Beast side of reading an answer, shared by the transport
// (http_client.cpp, which reads from the socket) and parseResponse
// (http_response.cpp, which reads from a string): how the parser is limited,
// how its message becomes an HttpResponse, and its errors in the
// technician's words. Only those two files include it: Beast is slow to compile.
#pragma once

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "agent/ctl/http_response.hpp"

namespace phonefarm::ctl {

using BeastResponseParser = boost::beast::http::response_parser<boost::beast::http::string_body>;

// Applies the limits; a HEAD answer has no body whatever its headers say.
void limitParser(BeastResponseParser& parser, const HttpLimits& limits, bool head_request);

// The finished message as an HttpResponse (an empty reason reads as the
// standard one, "No Content"). Throws TransportError for a status
// outside 100–599 or more headers than the limit.
HttpResponse toHttpResponse(BeastResponseParser& parser, const HttpLimits& limits);

// Why reading the answer failed: the agent closed early, a limit was hit, the
// bytes are not HTTP. "" when `ec` is not a parse error (a socket or TLS error
// the caller words itself).
std::string parseErrorText(const boost::beast::error_code& ec);

}  // namespace phonefarm::ctl
