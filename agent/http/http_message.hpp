// Plain request/response values that cross between the socket layer
// (HttpServer, Boost.Beast) and the request handler (ApiHandler). Keeping them
// free of Beast types lets the handler be a pure function, tested without
// sockets, and keeps Beast headers inside the server's translation unit.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
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
  std::string accept;         // value of Accept, "" if absent
  std::string last_event_id;  // value of Last-Event-ID (an SSE client resuming), "" if absent
  std::string if_none_match;  // value of If-None-Match (a browser revalidating a page file), "" if absent
  bool has_body = false;      // a body was sent (Content-Length > 0 or chunked)
  std::string body;
  std::string peer;  // "ip:port" of the client, for logs
};

// A response body produced over time (Server-Sent Events). The server writes
// the head without Content-Length and with `Connection: close` (the body ends
// with the connection), then what pull() hands it: after the head, after
// each completed write, and whenever the source calls `wake`. A write that
// does not complete within request_timeout (a client that stopped reading)
// closes the connection; a stream that writes is never cut.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // On the I/O thread, once the head is written. `wake` is thread-safe and
  // cheap (calls coalesce); it may be called after stop(), harmlessly.
  virtual void start(std::function<void()> wake) = 0;
  // On the I/O thread: appends the bytes ready now to `out`; false once the
  // body is complete (after appending its last bytes).
  virtual bool pull(std::string& out) = 0;
  // On the I/O thread, exactly once after start(): the connection is closing
  // (body complete, client gone, write timeout, server shutdown).
  virtual void stop() = 0;
};

struct StreamingBody {
  std::shared_ptr<BodyStream> source;
  // Written whenever nothing else was for this long (an SSE comment), so that
  // the client and proxies see a quiet stream is alive. Empty: none.
  std::chrono::milliseconds heartbeat_interval{15'000};
  std::string heartbeat;
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type/Length
  std::string content_type = "application/json; charset=utf-8";
  std::string body;
  std::string log_principal;  // token name that authenticated the request, for the access log
  // Set: `body` is ignored and the body is streamed (a 2xx GET only).
  std::optional<StreamingBody> stream;
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
