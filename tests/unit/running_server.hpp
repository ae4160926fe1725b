// RunningServer: an HttpServer on an event loop of its own thread
// (RunningLoop) for the server's unit tests (plain and TLS). The destructor
// shuts it down and aborts the test binary (rather than hanging CI) if the
// shutdown does not stop the loop. Helpers let a test act on the loop thread
// and wait for the server's state under a deadline, turn by turn, instead of
// sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <utility>

#include "agent/http/http_server.hpp"
#include "tests/unit/running_loop.hpp"

namespace phonefarm::http::test {

// Loopback on any free port, short timeouts, small limits: what the server
// tests start from (the TLS tests add their certificate).
inline HttpServerOptions testServerOptions() {
  using std::chrono::milliseconds;
  HttpServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.header_timeout = milliseconds(2000);
  o.idle_timeout = milliseconds(5000);
  o.request_timeout = milliseconds(5000);
  o.shutdown_grace = milliseconds(2000);
  o.max_body_bytes = 1024;
  o.max_connections = 16;
  return o;
}

class RunningServer {
 public:
  RunningServer(HttpServerOptions options, RequestHandler handler)
      : server_(running_.loop(), std::move(options), std::move(handler), [this] { running_.loop().stop(); }) {
    port_ = server_.start();
    running_.start();
  }
  ~RunningServer() {
    server_.beginShutdown();
    running_.joinWithin(std::chrono::seconds(10),
                        "watchdog: the loop did not stop 10 s after HttpServer::beginShutdown()");
  }
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  HttpServer& server() { return server_; }
  os::AsioEventLoop& loop() { return running_.loop(); }
  std::uint16_t port() const { return port_; }
  // Whether the shutdown has completed (and stopped the loop).
  bool waitStopped(std::chrono::milliseconds timeout) { return running_.waitStopped(timeout); }

  // Runs fn on the loop thread and returns its result (throws if the loop
  // does not run it within 5 s).
  template <class F>
  auto onLoop(F fn) {
    return running_.onLoop(std::move(fn));
  }

  // Returns once everything posted before this call has run on the loop thread.
  void sync() { running_.sync(); }

  // Waits, turn by turn under a deadline, until pred(stats) holds.
  template <class Pred>
  bool waitStats(Pred pred, std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      sync();
      if (pred(server_.stats())) return true;
      if (std::chrono::steady_clock::now() > until) return false;
    }
  }

  // A closed socket's session may finish its last handlers a few loop turns
  // after the peer sees the close (slower still under TSan): the count once
  // it is `expected`, or what it is at the deadline.
  std::uint64_t activeConnectionsSettled(std::uint64_t expected,
                                         std::chrono::milliseconds deadline = std::chrono::seconds(3)) {
    waitStats([expected](const HttpServerStats& s) { return s.active_connections == expected; }, deadline);
    return server_.stats().active_connections;
  }

 private:
  os::test::RunningLoop running_;  // declared first: outlives the server
  HttpServer server_;
  std::uint16_t port_ = 0;
};

}  // namespace phonefarm::http::test
