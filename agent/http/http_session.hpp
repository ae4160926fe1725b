// Internal to the HTTP server: the contract between the listener
// (HttpServer::Impl in http_server.cpp) and one connection (http_session.cpp).
// Only the server's own files include this header; it names Asio but not Beast, so
// the Beast parser/serializer templates are compiled in http_session.cpp only
// (and the SSL context only by name).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "agent/http/http_message.hpp"
#include "agent/http/http_server.hpp"

namespace boost::asio::ssl {
class context;
}

namespace phonefarm::http::detail {

// Lets any thread post work to the io_context, but only while the server
// exists: Responders can outlive the HttpServer (a store thread may still hold
// one), and posting to a destroyed io_context would be a use-after-free.
class PostGate {
 public:
  explicit PostGate(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}

  // Returns false (and drops f) once the gate is closed.
  template <class F>
  bool post(F&& f) {
    std::lock_guard lock(mutex_);
    if (!open_) return false;
    boost::asio::post(executor_, std::forward<F>(f));
    return true;
  }

  void close() {
    std::lock_guard lock(mutex_);
    open_ = false;
  }

 private:
  std::mutex mutex_;
  bool open_ = true;
  boost::asio::any_io_executor executor_;
};

class HttpSession;

// What a session needs from the server. Every call happens on the io_context
// thread.
class SessionHost {
 public:
  virtual const HttpServerOptions& options() const = 0;
  virtual const RequestHandler& handler() const = 0;
  virtual const std::shared_ptr<PostGate>& gate() const = 0;
  virtual bool shuttingDown() const = 0;
  // A complete request is about to be handed to the handler (for stats).
  virtual void countRequest() = 0;
  // A TLS handshake failed or timed out (for stats).
  virtual void countTlsHandshakeFailure() = 0;
  // The session has closed its socket; the host drops its reference.
  virtual void sessionEnded(HttpSession& session) = 0;
  // A request's header is complete: the session is busy (not evictable)
  // until requestEnded(). A new session starts idle.
  virtual void requestStarted(HttpSession& session) = 0;
  // Its response is written: idle again, the one idle shortest.
  virtual void requestEnded(HttpSession& session) = 0;

 protected:
  ~SessionHost() = default;
};

// One accepted connection. The host keeps it alive (strong reference) until
// sessionEnded(); pending I/O keeps it alive a little longer.
class HttpSession {
 public:
  virtual ~HttpSession() = default;
  virtual void start() = 0;
  // The server is shutting down: close now if idle between requests;
  // otherwise finish the request in progress and close after its response.
  virtual void onServerShutdown() = 0;
  // Shutdown grace expired, or evicted at max_connections: close whatever
  // state we are in.
  virtual void forceClose() = 0;
  // "ip:port", for logs.
  virtual const std::string& peer() const = 0;
};

// `peer` is "ip:port" for logs and HttpRequest::peer. With a `tls` context the
// session speaks HTTPS (handshake first); without, plain HTTP. The session
// keeps the context alive, so a reload may replace the server's at any time.
std::shared_ptr<HttpSession> makeHttpSession(boost::asio::ip::tcp::socket socket, SessionHost& host, std::string peer,
                                             std::shared_ptr<boost::asio::ssl::context> tls);

}  // namespace phonefarm::http::detail
