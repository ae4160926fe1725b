// Plain request/response values that cross between the socket layer
// (HttpServer, Boost.Beast) and the request handler (ApiHandler). Keeping them
// free of Beast types lets the handler be a pure function, tested without
// sockets, and keeps Beast headers inside the server's translation unit.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace phonefarm::http {

struct HttpRequest {
  std::string method;         // "GET", "POST", ... exactly as received
  std::string target;         // path + optional "?query", as received
  std::string authorization;  // value of the Authorization header, "" if absent
  std::string content_type;   // value of Content-Type, "" if absent
  bool has_body = false;      // a body was sent (Content-Length > 0 or chunked)
  std::string body;
  std::string peer;  // "ip:port" of the client, for logs
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type/Length
  std::string content_type = "application/json; charset=utf-8";
  std::string body;
  std::string log_principal;  // token name that authenticated the request, for the access log
};

// The handler answers exactly once, possibly later and from another thread;
// the server marshals the answer back to the connection.
using Responder = std::function<void(HttpResponse)>;
using RequestHandler = std::function<void(HttpRequest, Responder)>;

// Asked on the I/O thread when a request's header is complete and the client
// waits for `100 Continue` before it sends the body (`request.body` is
// empty). A response refuses the request there and then (401, 403, 404, 405:
// the client does not upload a body for nothing); nullopt lets it continue.
using RequestPreflight = std::function<std::optional<HttpResponse>(const HttpRequest& request)>;

}  // namespace phonefarm::http
