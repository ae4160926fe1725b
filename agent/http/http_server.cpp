// HttpServer: the listener and the lifecycle around the sessions
// (http_session.cpp). Everything here runs on the event loop's thread except
// the few entry points documented as thread-safe, which only post.
#include "agent/http/http_server.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <functional>
#include <list>
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

}  // namespace

HttpServerOptions makeHttpServerOptions(const ListenAddress& listen, const HttpConfig& http) {
  HttpServerOptions options;
  options.host = listen.host;
  options.port = listen.port;
  options.first_request_timeout = http.first_request_timeout;
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
  Impl(asio::io_context& ioc, HttpServerOptions options, RequestHandler handler, std::function<void()> on_stopped)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        on_stopped_(std::move(on_stopped)),
        ioc_(ioc),
        gate_(std::make_shared<detail::PostGate>(ioc_.get_executor())),
        acceptor_(ioc_),
        accept_retry_timer_(ioc_),
        grace_timer_(ioc_) {}

  // Members are destroyed after this, sessions first; the loop outlives them.
  ~Impl() { gate_->close(); }

  std::uint16_t start() {
    if (options_.tls) tls_ = loadTls(*options_.tls, "http.tls.loaded");
    if (options_.listen_fd >= 0) return adoptListener(std::exchange(options_.listen_fd, -1));
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
    spdlog::info("http.listening addr={} tls={} activated=no", formatEndpoint(bound), tls_ ? "on" : "off");
    doAccept();
    return bound.port();
  }

  // A socket systemd bound and listens on (daemon/listen_socket checked its
  // address against `listen`).
  std::uint16_t adoptListener(int fd) {
    setCloseOnExec(fd);  // the work must never inherit (and accept on) it
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      const int error = errno;
      ::close(fd);
      throw std::system_error(error, std::generic_category(), "http: passed listening socket: getsockname");
    }
    const tcp protocol = addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
    error_code ec;
    acceptor_.assign(protocol, fd, ec);
    if (ec) {
      ::close(fd);
      throw std::system_error(ec, "http: passed listening socket: assign");
    }
    const auto bound = acceptor_.local_endpoint(ec);
    if (ec) throw std::system_error(ec, "http: passed listening socket: local address");
    spdlog::info("http.listening addr={} tls={} activated=yes", formatEndpoint(bound), tls_ ? "on" : "off");
    doAccept();
    return bound.port();
  }

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

  void beginShutdown() {
    gate_->post([this] { onShutdownRequested(); });
  }

  HttpServerStats stats() const {
    return HttpServerStats{accepted_.load(), rejected_over_cap_.load(),     evicted_idle_.load(), requests_.load(),
                           active_.load(),   tls_handshake_failures_.load()};
  }

  // SessionHost
  const HttpServerOptions& options() const override { return options_; }
  const RequestHandler& handler() const override { return handler_; }
  const std::shared_ptr<detail::PostGate>& gate() const override { return gate_; }
  bool shuttingDown() const override { return shutting_down_; }
  void countRequest() override { ++requests_; }
  void countTlsHandshakeFailure() override { ++tls_handshake_failures_; }

  void sessionEnded(detail::HttpSession& session) override {
    const auto it = sessions_.find(&session);
    if (it == sessions_.end()) return;
    if (it->second.idle) idle_.erase(it->second.idle_pos);
    sessions_.erase(it);
    active_ = sessions_.size();
    if (shutting_down_ && sessions_.empty()) finishShutdown();
  }

  void requestStarted(detail::HttpSession& session) override {
    const auto it = sessions_.find(&session);
    if (it == sessions_.end() || !it->second.idle) return;
    idle_.erase(it->second.idle_pos);
    it->second.idle = false;
  }

  void requestEnded(detail::HttpSession& session) override {
    const auto it = sessions_.find(&session);
    if (it == sessions_.end()) return;
    if (it->second.idle) idle_.erase(it->second.idle_pos);
    it->second.idle_pos = idle_.insert(idle_.end(), &session);
    it->second.idle = true;
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
    if (sessions_.size() >= options_.max_connections && !idle_.empty()) evictIdleLongest();
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
    auto& slot = sessions_[session.get()];
    slot.session = session;
    slot.idle_pos = idle_.insert(idle_.end(), session.get());  // no request yet: idle since now
    slot.idle = true;
    ++accepted_;
    active_ = sessions_.size();
    session->start();
    doAccept();
  }

  // As nginx reuses idle keep-alive connections: silent, dribbling and
  // keep-alive clients cannot lock out one that has a request to make.
  void evictIdleLongest() {
    const std::shared_ptr<detail::HttpSession> victim = sessions_.at(idle_.front()).session;
    ++evicted_idle_;
    if (const long suppressed = evict_log_.admit(); suppressed >= 0) {
      spdlog::info("http.connection.evicted reason=max_connections max={} peer={} evicted_total={} suppressed={}",
                   options_.max_connections, victim->peer(), evicted_idle_.load(), suppressed);
    }
    victim->forceClose();  // sessionEnded() takes it out of sessions_ and idle_
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
    if (on_stopped_) on_stopped_();
  }

  std::vector<std::shared_ptr<detail::HttpSession>> snapshotSessions() const {
    std::vector<std::shared_ptr<detail::HttpSession>> out;
    out.reserve(sessions_.size());
    for (const auto& [ptr, slot] : sessions_) out.push_back(slot.session);
    return out;
  }

  HttpServerOptions options_;
  RequestHandler handler_;
  std::function<void()> on_stopped_;
  asio::io_context& ioc_;
  std::shared_ptr<detail::PostGate> gate_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;
  asio::steady_timer grace_timer_;
  // Strong references: a session waiting for its handler has no pending I/O
  // to keep it alive, and Responders only hold weak references.
  struct Slot {
    std::shared_ptr<detail::HttpSession> session;
    std::list<detail::HttpSession*>::iterator idle_pos;  // valid while idle
    bool idle = false;
  };
  std::unordered_map<detail::HttpSession*, Slot> sessions_;
  // The sessions without a request in flight, the one idle longest first.
  std::list<detail::HttpSession*> idle_;
  bool shutting_down_ = false;
  bool stopped_ = false;
  LogRateLimit cap_log_;
  LogRateLimit evict_log_;
  LogRateLimit accept_error_log_;
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> rejected_over_cap_{0};
  std::atomic<std::uint64_t> evicted_idle_{0};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> active_{0};
  std::atomic<std::uint64_t> tls_handshake_failures_{0};
  // Null for plain HTTP. Replaced whole on reload; sessions hold their own reference.
  std::shared_ptr<asio::ssl::context> tls_;
};

HttpServer::HttpServer(os::AsioEventLoop& loop, HttpServerOptions options, RequestHandler handler,
                       std::function<void()> on_stopped)
    : impl_(std::make_unique<Impl>(loop.ioContext(), std::move(options), std::move(handler), std::move(on_stopped))) {}

HttpServer::~HttpServer() = default;

std::uint16_t HttpServer::start() { return impl_->start(); }
bool HttpServer::reloadTls() { return impl_->reloadTls(); }
void HttpServer::beginShutdown() { impl_->beginShutdown(); }
HttpServerStats HttpServer::stats() const { return impl_->stats(); }

}  // namespace phonefarm::http
