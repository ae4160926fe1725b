// HttpServer: the daemon's HTTP/1.1 socket layer. On the daemon's event loop
// (os::AsioEventLoop, which it does not own) it accepts connections, reads
// requests with timeouts and size limits, hands each one as a plain
// HttpRequest to the RequestHandler and writes back the HttpResponse it
// answers with.
//
// This header deliberately includes no Boost.Asio/Beast header (pimpl): many
// translation units include it, and Beast is expensive to compile. The Beast
// code lives in http_server.cpp (listener, lifecycle) and http_session.cpp
// (one connection).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/http/http_message.hpp"
#include "common/config/config.hpp"
#include "common/os/asio_event_loop.hpp"

namespace phonefarm::http {

// Milliseconds rather than the config's seconds so tests can use short timeouts.
struct HttpServerOptions {
  std::string host = "127.0.0.1";  // IPv4/IPv6 literal or "localhost"
  std::uint16_t port = 0;          // 0 = an ephemeral port (tests)
  // A listening socket to serve on instead of binding host:port (systemd
  // socket activation); the server takes ownership. -1 = bind it ourselves.
  int listen_fd = -1;
  // From the accept until the first request's header is complete (the TLS
  // handshake included): one deadline, not extended by any activity.
  std::chrono::milliseconds first_request_timeout{5'000};
  // From the first byte of a later request until its header is complete.
  std::chrono::milliseconds header_timeout{10'000};
  // Waiting for the first byte of the next request on a keep-alive connection.
  std::chrono::milliseconds idle_timeout{60'000};
  // Reading the body, and writing the response.
  std::chrono::milliseconds request_timeout{30'000};
  // How long beginShutdown() waits for in-flight requests before force-closing.
  std::chrono::milliseconds shutdown_grace{5'000};
  std::size_t max_body_bytes = 65'536;
  // At the cap a new connection closes the one idle longest (no request in
  // flight: connected and silent, dribbling a header, or between keep-alive
  // requests); it is refused only when every connection has a request in flight.
  std::size_t max_connections = 512;
  // Serve HTTPS with this certificate and key (read by start() and
  // reloadTls()); nullopt = plain HTTP.
  std::optional<TlsFiles> tls;
  // Checks a request that expects `100 Continue` before its body is read;
  // empty = every such request continues.
  RequestPreflight preflight;
};

HttpServerOptions makeHttpServerOptions(const ListenAddress& listen, const HttpConfig& http);

struct HttpServerStats {
  std::uint64_t accepted = 0;           // connections that became sessions
  std::uint64_t rejected_over_cap = 0;  // closed at once: max_connections, none idle
  std::uint64_t evicted_idle = 0;       // idle ones closed to admit a new one at max_connections
  std::uint64_t requests = 0;           // complete requests handed to the handler
  std::uint64_t active_connections = 0;
  std::uint64_t tls_handshake_failures = 0;  // failed or timed out (plain HTTP to a TLS port, old TLS, scanners)
};

class HttpServer final {
 public:
  // Serves on `loop`, which must outlive the server; does not bind or start
  // anything. `on_stopped` runs on the loop thread once a beginShutdown() has
  // completed: the daemon stops the loop there.
  HttpServer(os::AsioEventLoop& loop, HttpServerOptions options, RequestHandler handler,
             std::function<void()> on_stopped = {});
  // The loop must not be running (its run() returned, or was never called),
  // and must not run again: handlers of this server may still be queued in
  // it. Responders still held by the handler become no-ops.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Loads the TLS certificate and key if configured (ConfigError naming the
  // file when they are unusable), binds (SO_REUSEADDR) and listens, or takes
  // options.listen_fd, and starts accepting; logs `http.listening
  // addr=HOST:PORT tls=on|off activated=yes|no`. Returns the bound port (the
  // ephemeral one when options.port is 0). Throws std::system_error naming
  // the address. Call before the loop runs, or on its thread.
  std::uint16_t start();

  // Re-reads the TLS certificate and key (SIGHUP). New connections use the new
  // pair, established ones keep theirs. A pair that does not load is logged
  // and the one in force stays; returns false then. Without TLS: no-op, true.
  // Call on the loop thread (e.g. from a signal handler of the loop).
  bool reloadTls();

  // Thread-safe and idempotent. Stops accepting, closes idle keep-alive
  // connections, lets in-flight requests finish and their responses be written
  // with `Connection: close`; when every connection has ended (or after
  // shutdown_grace, force-closing the rest) it calls on_stopped.
  void beginShutdown();

  // Thread-safe snapshot.
  HttpServerStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace phonefarm::http
