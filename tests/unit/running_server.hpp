// RunningServer: an HttpServer on its own thread for the server's unit tests
// (plain and TLS). The destructor shuts it down and aborts the test binary
// (rather than hanging CI) if run() does not return. Helpers let a test act on
// the io thread and wait for the server's state under a deadline, turn by
// turn, instead of sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <stdexcept>
#include <thread>
#include <utility>

#include "agent/http/http_server.hpp"

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
      : server_(std::move(options), std::move(handler)), stopped_(stopped_promise_.get_future()) {
    port_ = server_.start();
    thread_ = std::thread([this] {
      server_.run();
      stopped_promise_.set_value();
    });
  }
  ~RunningServer() {
    server_.beginShutdown();
    if (stopped_.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      std::fprintf(stderr, "watchdog: HttpServer::run() did not return 10 s after beginShutdown()\n");
      std::abort();
    }
    thread_.join();
  }
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  HttpServer& server() { return server_; }
  std::uint16_t port() const { return port_; }
  bool waitStopped(std::chrono::milliseconds timeout) {
    return stopped_.wait_for(timeout) == std::future_status::ready;
  }

  // Runs fn on the io thread and returns its result (throws if the loop does
  // not run it within 5 s).
  template <class F>
  auto onLoop(F fn) {
    std::promise<decltype(fn())> done;
    server_.post([&] {
      if constexpr (std::is_void_v<decltype(fn())>) {
        fn();
        done.set_value();
      } else {
        done.set_value(fn());
      }
    });
    auto f = done.get_future();
    if (f.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      throw std::runtime_error("io thread did not run the task");
    }
    return f.get();
  }

  // Returns once everything posted before this call has run on the io thread.
  void sync() {
    onLoop([] {});
  }

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
  HttpServer server_;
  std::promise<void> stopped_promise_;
  std::shared_future<void> stopped_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace phonefarm::http::test
