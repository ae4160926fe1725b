// HttpServer: the daemon's HTTP/1.1 socket layer. It owns the one io_context
// the daemon runs HTTP and its timers on, accepts connections, reads requests
// with timeouts and size limits, hands each one as a plain HttpRequest to the
// RequestHandler and writes back the HttpResponse it answers with.
//
// This header deliberately includes no Boost.Asio/Beast header (pimpl): many
// translation units include it, and Beast is expensive to compile. The Beast
// code lives in http_server.cpp (listener, lifecycle) and http_session.cpp
// (one connection).
//
// It is also the daemon's os::EventLoop: the executor's timers and fd
// watches run on the same io_context thread as HTTP.
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
#include "common/os/event_loop.hpp"

namespace phonefarm::http {

// Milliseconds rather than the config's seconds so tests can use short timeouts.
struct HttpServerOptions {
  std::string host = "127.0.0.1";  // IPv4/IPv6 literal or "localhost"
  std::uint16_t port = 0;          // 0 = an ephemeral port (tests)
  // From the first byte of a request until its header is complete.
  std::chrono::milliseconds header_timeout{10'000};
  // Waiting for the first byte of the next request on a keep-alive connection.
  std::chrono::milliseconds idle_timeout{60'000};
  // Reading the body, and writing the response.
  std::chrono::milliseconds request_timeout{30'000};
  // How long beginShutdown() waits for in-flight requests before force-closing.
  std::chrono::milliseconds shutdown_grace{5'000};
  std::size_t max_body_bytes = 65'536;
  std::size_t max_connections = 512;
  // Serve HTTPS with this certificate and key (read by start() and
  // reloadTls()); nullopt = plain HTTP.
  std::optional<TlsFiles> tls;
};

HttpServerOptions makeHttpServerOptions(const ListenAddress& listen, const HttpConfig& http);

struct HttpServerStats {
  std::uint64_t accepted = 0;           // connections that became sessions
  std::uint64_t rejected_over_cap = 0;  // closed at once because of max_connections
  std::uint64_t requests = 0;           // complete requests handed to the handler
  std::uint64_t active_connections = 0;
  std::uint64_t tls_handshake_failures = 0;  // failed or timed out (plain HTTP to a TLS port, old TLS, scanners)
};

class HttpServer final : public os::EventLoop {
 public:
  // Does not bind or start anything.
  HttpServer(HttpServerOptions options, RequestHandler handler);
  // run() must have returned (or never been called). Responders still held by
  // the handler become no-ops.
  ~HttpServer() override;
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Loads the TLS certificate and key if configured (ConfigError naming the
  // file when they are unusable), binds (SO_REUSEADDR), listens and starts
  // accepting; logs `http.listening addr=HOST:PORT tls=on|off`. Returns the
  // bound port (the ephemeral one when options.port is 0). Throws
  // std::system_error naming the address.
  std::uint16_t start();

  // Re-reads the TLS certificate and key (SIGHUP). New connections use the new
  // pair, established ones keep theirs. A pair that does not load is logged
  // and the one in force stays; returns false then. Without TLS: no-op, true.
  // Call on the io_context thread (e.g. from addSignalHandler's callback).
  bool reloadTls();

  // Runs the io_context on the calling thread until a beginShutdown() has
  // completed (or the server is otherwise stopped).
  void run();

  // os::EventLoop. post() is thread-safe; the others must be called on the
  // io_context thread, or before run(). Callbacks that throw are logged and
  // swallowed. Timers and watches still pending once run() has returned never
  // fire; the destructor drops them and never closes a watched fd.
  void post(std::function<void()> fn) override;
  Id startTimer(std::chrono::milliseconds delay, std::function<void()> fn) override;
  void cancelTimer(Id id) override;
  // Throws std::system_error if fd cannot be watched (not open, or already
  // watched: each fd may have one watch at a time).
  Id watchReadable(int fd, std::function<void()> fn) override;
  void unwatch(Id id) override;

  // Runs fn on the io_context thread each time signo is delivered. Call before
  // run() or from the io_context thread.
  void addSignalHandler(int signo, std::function<void()> fn);

  // Runs fn on the io_context thread after delay. Thread-safe.
  void runAfter(std::chrono::milliseconds delay, std::function<void()> fn);

  // Thread-safe and idempotent. Stops accepting, closes idle keep-alive
  // connections, lets in-flight requests finish and their responses be written
  // with `Connection: close`; when every connection has ended (or after
  // shutdown_grace, force-closing the rest) run() returns.
  void beginShutdown();

  // Thread-safe snapshot.
  HttpServerStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace phonefarm::http
