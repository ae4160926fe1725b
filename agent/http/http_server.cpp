// HttpServer: the listener and the lifecycle around the sessions
// (http_session.cpp). Everything here runs on the single io_context thread
// except the few entry points documented as thread-safe, which only post.
#include "agent/http/http_server.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agent/http/http_session.hpp"
#include "agent/http/tls_context.hpp"

namespace phonefarm::http {
namespace {

namespace asio = boost::asio;
using boost::asio::ip::tcp;
using boost::system::error_code;

// After EMFILE/ENFILE the pending connection stays in the backlog and the
// acceptor would spin on it; back off instead.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

// At most one line per second for warnings a flood would repeat.
class LogRateLimit {
 public:
  // Returns how many lines were suppressed since the last one, or -1 if this
  // one must be suppressed too.
  long admit() {
    const auto now = std::chrono::steady_clock::now();
    if (logged_once_ && now - last_ < std::chrono::seconds(1)) {
      ++suppressed_;
      return -1;
    }
    logged_once_ = true;
    last_ = now;
    return std::exchange(suppressed_, 0);
  }

 private:
  bool logged_once_ = false;
  std::chrono::steady_clock::time_point last_{};
  long suppressed_ = 0;
};

std::string formatEndpoint(const tcp::endpoint& ep) {
  const auto address = ep.address().to_string();
  return ep.address().is_v6() ? "[" + address + "]:" + std::to_string(ep.port())
                              : address + ":" + std::to_string(ep.port());
}

// Children the daemon spawns must not inherit our sockets: an inherited
// listening socket would keep the port bound after the agent exits.
void setCloseOnExec(int fd) { ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC); }

bool isOutOfDescriptors(const error_code& ec) {
  return ec == boost::system::errc::too_many_files_open || ec == boost::system::errc::too_many_files_open_in_system ||
         ec == boost::system::errc::no_buffer_space || ec == boost::system::errc::not_enough_memory;
}

// Callbacks from users of the server run on the io_context thread; one that
// throws must not take the whole event loop down with it.
void runGuarded(const char* what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    spdlog::error("http.callback.failed kind={} error={}", what, e.what());
  } catch (...) {
    spdlog::error("http.callback.failed kind={} error=unknown", what);
  }
}

}  // namespace

HttpServerOptions makeHttpServerOptions(const ListenAddress& listen, const HttpConfig& http) {
  HttpServerOptions options;
  options.host = listen.host;
  options.port = listen.port;
  options.header_timeout = http.header_timeout;
  options.idle_timeout = http.idle_timeout;
  options.request_timeout = http.request_timeout;
  options.max_body_bytes = http.max_body_bytes;
  options.max_connections = http.max_connections;
  options.tls = http.tls;
  return options;
}

class HttpServer::Impl final : public detail::SessionHost {
 public:
  Impl(HttpServerOptions options, RequestHandler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        ioc_(1),
        gate_(std::make_shared<detail::PostGate>(ioc_.get_executor())),
        work_(asio::make_work_guard(ioc_)),
        acceptor_(ioc_),
        accept_retry_timer_(ioc_),
        grace_timer_(ioc_) {}

  // Members are destroyed after this: sessions first, the io_context last.
  ~Impl() {
    gate_->close();
    // Handlers still queued in the io_context share the watches; release the
    // fds now, as they belong to the callers and must not be closed with them.
    for (auto& [id, watch] : watches_) watch->descriptor.release();
  }

  std::uint16_t start() {
    if (options_.tls) tls_ = loadTls(*options_.tls, "http.tls.loaded");
    const tcp::endpoint endpoint(parseHost(options_.host), options_.port);
    const auto where = "http: listen on " + formatEndpoint(endpoint);
    const int fd = ::socket(endpoint.address().is_v6() ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), where + ": socket");
    error_code ec;
    acceptor_.assign(endpoint.protocol(), fd, ec);
    if (ec) {
      ::close(fd);
      throw std::system_error(ec, where + ": assign");
    }
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (ec) throw std::system_error(ec, where + ": SO_REUSEADDR");
    acceptor_.bind(endpoint, ec);
    if (ec) throw std::system_error(ec, where + ": bind");
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::system_error(ec, where + ": listen");
    const auto bound = acceptor_.local_endpoint();
    spdlog::info("http.listening addr={} tls={}", formatEndpoint(bound), tls_ ? "on" : "off");
    doAccept();
    return bound.port();
  }

  void run() { ioc_.run(); }

  bool reloadTls() {
    if (!options_.tls) return true;
    try {
      tls_ = loadTls(*options_.tls, "http.tls.reloaded");
      return true;
    } catch (const std::exception& e) {
      spdlog::error("http.tls.reload_failed keeping the certificate in force: {}", e.what());
      return false;
    }
  }

  void post(std::function<void()> fn) {
    gate_->post([fn = std::move(fn)] { runGuarded("post", fn); });
  }

  void addSignalHandler(int signo, std::function<void()> fn) {
    auto set = std::make_unique<asio::signal_set>(ioc_, signo);
    armSignal(*set, std::make_shared<std::function<void()>>(std::move(fn)));
    signals_.push_back(std::move(set));
  }

  void runAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
    // The timer is created on the io_context thread: timers are not thread-safe.
    gate_->post([this, delay, fn = std::move(fn)]() mutable { startTimer(delay, std::move(fn)); });
  }

  os::EventLoop::Id startTimer(std::chrono::milliseconds delay, std::function<void()> fn) {
    const auto id = next_id_++;
    auto& timer = *timers_.emplace(id, std::make_unique<asio::steady_timer>(ioc_, delay)).first->second;
    timer.async_wait([this, id, fn = std::move(fn)](error_code ec) {
      // A timer cancelled after it expired still completes with success: the
      // map, not ec, says whether it is live. Erase first so fn may start or
      // cancel timers (its own id included) freely.
      if (timers_.erase(id) == 0 || ec) return;
      runGuarded("timer", fn);
    });
    return id;
  }

  // Destroying the timer cancels its wait.
  void cancelTimer(os::EventLoop::Id id) { timers_.erase(id); }

  os::EventLoop::Id watchReadable(int fd, std::function<void()> fn) {
    auto watch = std::make_shared<Watch>(ioc_, std::move(fn));
    error_code ec;
    watch->descriptor.assign(fd, ec);
    if (ec) throw std::system_error(ec, "event loop: watch fd " + std::to_string(fd));
    const auto id = next_id_++;
    watches_.emplace(id, watch);
    armWatch(id, watch);
    return id;
  }

  void unwatch(os::EventLoop::Id id) {
    const auto it = watches_.find(id);
    if (it == watches_.end()) return;
    // release() aborts the pending wait and gives the fd back without closing
    // it. Queued handlers (or fn itself, if it is unwatching its own id) keep
    // the Watch alive; they find the id gone and stop.
    it->second->descriptor.release();
    watches_.erase(it);
  }

  void beginShutdown() {
    gate_->post([this] { onShutdownRequested(); });
  }

  HttpServerStats stats() const {
    return HttpServerStats{accepted_.load(), rejected_over_cap_.load(), requests_.load(), active_.load(),
                           tls_handshake_failures_.load()};
  }

  // SessionHost
  const HttpServerOptions& options() const override { return options_; }
  const RequestHandler& handler() const override { return handler_; }
  const std::shared_ptr<detail::PostGate>& gate() const override { return gate_; }
  bool shuttingDown() const override { return shutting_down_; }
  void countRequest() override { ++requests_; }
  void countTlsHandshakeFailure() override { ++tls_handshake_failures_; }

  void sessionEnded(detail::HttpSession& session) override {
    sessions_.erase(&session);
    active_ = sessions_.size();
    if (shutting_down_ && sessions_.empty()) finishShutdown();
  }

 private:
  static std::shared_ptr<asio::ssl::context> loadTls(const TlsFiles& files, const char* event) {
    TlsServerContext loaded = loadTlsServerContext(files);
    auto context = std::make_shared<asio::ssl::context>(loaded.ctx.release());
    spdlog::info("{} cert={} subject=\"{}\" not_after=\"{}\" chain={}", event, files.cert.string(), loaded.subject,
                 loaded.not_after, loaded.chain_certificates);
    return context;
  }

  static asio::ip::address parseHost(const std::string& host) {
    if (host == "localhost") return asio::ip::address_v4::loopback();
    error_code ec;
    auto address = asio::ip::make_address(host, ec);
    if (ec) throw std::system_error(ec, "http: listen host '" + host + "' is not an IP address");
    return address;
  }

  void doAccept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket socket) { onAccept(ec, std::move(socket)); });
  }

  void onAccept(error_code ec, tcp::socket socket) {
    if (shutting_down_) return;  // the acceptor is closed; a just-accepted socket closes with `socket`
    if (ec) return onAcceptError(ec);
    if (sessions_.size() >= options_.max_connections) {
      ++rejected_over_cap_;
      if (const long suppressed = cap_log_.admit(); suppressed >= 0) {
        spdlog::warn("http.connection.rejected reason=max_connections max={} rejected_total={} suppressed={}",
                     options_.max_connections, rejected_over_cap_.load(), suppressed);
      }
      error_code ignored;
      socket.close(ignored);
      return doAccept();
    }
    setCloseOnExec(socket.native_handle());
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const auto remote = socket.remote_endpoint(ignored);
    auto session = detail::makeHttpSession(std::move(socket), *this, ignored ? "-" : formatEndpoint(remote), tls_);
    sessions_.emplace(session.get(), session);
    ++accepted_;
    active_ = sessions_.size();
    session->start();
    doAccept();
  }

  // Accept errors never stop the acceptor: the daemon must stay reachable.
  void onAcceptError(const error_code& ec) {
    if (ec == asio::error::operation_aborted) return;  // acceptor closed
    if (const long suppressed = accept_error_log_.admit(); suppressed >= 0) {
      spdlog::warn("http.accept.failed error=\"{}\" suppressed={}", ec.message(), suppressed);
    }
    if (!isOutOfDescriptors(ec)) return doAccept();
    accept_retry_timer_.expires_after(kAcceptRetryDelay);
    accept_retry_timer_.async_wait([this](error_code wait_ec) {
      if (!wait_ec && !shutting_down_) doAccept();
    });
  }

  void armSignal(asio::signal_set& set, std::shared_ptr<std::function<void()>> fn) {
    set.async_wait([this, &set, fn](error_code ec, int) {
      if (ec) return;
      armSignal(set, fn);  // re-arm first so a signal during fn is not lost
      runGuarded("signal", *fn);
    });
  }

  void onShutdownRequested() {
    if (shutting_down_) return;
    shutting_down_ = true;
    spdlog::info("http.shutdown.begin active={}", sessions_.size());
    error_code ignored;
    acceptor_.close(ignored);
    accept_retry_timer_.cancel();
    // Copy: sessions remove themselves from sessions_ as they close.
    for (const auto& session : snapshotSessions()) session->onServerShutdown();
    if (sessions_.empty()) return finishShutdown();
    grace_timer_.expires_after(options_.shutdown_grace);
    grace_timer_.async_wait([this](error_code ec) {
      if (ec || stopped_) return;
      spdlog::warn("http.shutdown.forced remaining={}", sessions_.size());
      for (const auto& session : snapshotSessions()) session->forceClose();
      finishShutdown();
    });
  }

  void finishShutdown() {
    if (stopped_) return;
    stopped_ = true;
    grace_timer_.cancel();
    spdlog::info("http.shutdown.done");
    work_.reset();
    // Signal sets and user timers still hold work; stop() makes run() return anyway.
    ioc_.stop();
  }

  struct Watch {
    Watch(asio::io_context& ioc, std::function<void()> f) : descriptor(ioc), fn(std::move(f)) {}
    asio::posix::stream_descriptor descriptor;
    std::function<void()> fn;
    bool failed = false;  // the last wait failed
  };

  bool watching(os::EventLoop::Id id) const { return watches_.count(id) != 0; }

  // Level-triggered although Asio registers the fd edge-triggered: each
  // non-speculative async_wait re-arms it with EPOLL_CTL_MOD, which reports
  // readiness that is already there. fn runs from the completion, so a
  // callback that never drains still yields to HTTP between calls.
  void armWatch(os::EventLoop::Id id, const std::shared_ptr<Watch>& watch) {
    watch->descriptor.async_wait(asio::posix::stream_descriptor::wait_read, [this, id, watch](error_code ec) {
      if (ec == asio::error::operation_aborted || !watching(id)) return;
      if (ec) return onWatchError(id, watch, ec);
      watch->failed = false;
      runGuarded("watch", watch->fn);
      if (watching(id)) armWatch(id, watch);
    });
  }

  // fn gets one call to discover the error itself (read, waitid); if the
  // error comes straight back the watch goes quiet rather than spin.
  void onWatchError(os::EventLoop::Id id, const std::shared_ptr<Watch>& watch, const error_code& ec) {
    const int fd = watch->descriptor.native_handle();
    if (watch->failed) {
      spdlog::warn("loop.watch.stopped fd={} error=\"{}\"", fd, ec.message());
      return;
    }
    spdlog::warn("loop.watch.failed fd={} error=\"{}\"", fd, ec.message());
    watch->failed = true;
    runGuarded("watch", watch->fn);
    if (watching(id)) armWatch(id, watch);
  }

  std::vector<std::shared_ptr<detail::HttpSession>> snapshotSessions() const {
    std::vector<std::shared_ptr<detail::HttpSession>> out;
    out.reserve(sessions_.size());
    for (const auto& [ptr, session] : sessions_) out.push_back(session);
    return out;
  }

  HttpServerOptions options_;
  RequestHandler handler_;
  asio::io_context ioc_;
  std::shared_ptr<detail::PostGate> gate_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;
  asio::steady_timer grace_timer_;
  std::vector<std::unique_ptr<asio::signal_set>> signals_;
  // EventLoop timers and watches; ids are shared and never reused, so a stale
  // handler cannot mistake a newer entry for its own.
  os::EventLoop::Id next_id_ = 1;
  std::unordered_map<os::EventLoop::Id, std::unique_ptr<asio::steady_timer>> timers_;
  std::unordered_map<os::EventLoop::Id, std::shared_ptr<Watch>> watches_;
  // Strong references: a session waiting for its handler has no pending I/O
  // to keep it alive, and Responders only hold weak references.
  std::unordered_map<detail::HttpSession*, std::shared_ptr<detail::HttpSession>> sessions_;
  bool shutting_down_ = false;
  bool stopped_ = false;
  LogRateLimit cap_log_;
  LogRateLimit accept_error_log_;
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> rejected_over_cap_{0};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> active_{0};
  std::atomic<std::uint64_t> tls_handshake_failures_{0};
  // Null for plain HTTP. Replaced whole on reload; sessions hold their own reference.
  std::shared_ptr<asio::ssl::context> tls_;
};

HttpServer::HttpServer(HttpServerOptions options, RequestHandler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() = default;

std::uint16_t HttpServer::start() { return impl_->start(); }
bool HttpServer::reloadTls() { return impl_->reloadTls(); }
void HttpServer::run() { impl_->run(); }
void HttpServer::post(std::function<void()> fn) { impl_->post(std::move(fn)); }
void HttpServer::addSignalHandler(int signo, std::function<void()> fn) {
  impl_->addSignalHandler(signo, std::move(fn));
}
void HttpServer::runAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
  impl_->runAfter(delay, std::move(fn));
}
os::EventLoop::Id HttpServer::startTimer(std::chrono::milliseconds delay, std::function<void()> fn) {
  return impl_->startTimer(delay, std::move(fn));
}
void HttpServer::cancelTimer(Id id) { impl_->cancelTimer(id); }
os::EventLoop::Id HttpServer::watchReadable(int fd, std::function<void()> fn) {
  return impl_->watchReadable(fd, std::move(fn));
}
void HttpServer::unwatch(Id id) { impl_->unwatch(id); }
void HttpServer::beginShutdown() { impl_->beginShutdown(); }
HttpServerStats HttpServer::stats() const { return impl_->stats(); }

}  // namespace phonefarm::http
