// One HTTP/1.1 connection, modelled on Beast's async server examples: read a
// request under the right deadline, hand it to the RequestHandler, write the
// answer, then either wait for the next request (keep-alive) or close. One
// request at a time per connection; bytes of a pipelined request that arrive
// with the previous one stay in the buffer and are parsed next.
//
// The same code serves plain HTTP and HTTPS: the session is a template over
// the stream (beast::tcp_stream, or beast::ssl_stream over one). HTTPS adds a
// handshake before the first request and a TLS close_notify before a normal
// close; everything else (limits, deadlines, keep-alive, logging) is shared.
//
// Deadlines, all through beast::tcp_stream (a timeout closes the socket):
//   accept .. end of the first header  -> first_request_timeout, one deadline
//                                         (TLS handshake, silence and a dribbled
//                                         header all count against it)
//   idle (between keep-alive requests) -> idle_timeout
//   first byte .. end of a later header -> header_timeout (defeats slow-header clients)
//   body, and writing the response     -> request_timeout
//   waiting for the handler            -> none (the server's shutdown grace bounds it)
//   a streamed body (HttpResponse::stream): each write -> request_timeout;
//   between writes none (the source's heartbeat keeps a quiet stream alive);
//   a read stays posted to notice the client leaving. A streaming session
//   counts as busy (never evicted as idle) until it closes.
//
// The server counts a session as idle (evictable at max_connections) from
// its accept, and again after each response, until a request's header is
// complete (SessionHost::requestStarted/requestEnded). 401 and 403 answers
// close the connection: a client without a valid token gets nothing from
// keeping it.
#include "agent/http/http_session.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <optional>
#include <string_view>
#include <type_traits>
#include <vector>

#include "agent/http/request_framing.hpp"
#include "agent/http/responder_state.hpp"

namespace phonefarm::http::detail {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using beast::iequals;

constexpr std::size_t kHeaderLimit = 16 * 1024;
constexpr std::size_t kReadChunk = 4096;
// When a connection closes with input we have not read (an error answered
// before the body was read, pipelined bytes), we half-close and drain for a
// moment first: closing with unread input makes the kernel send RST, which can
// destroy the response before the client reads it (e.g. a 413 mid-upload).
constexpr std::chrono::milliseconds kLingerTimeout{1000};
constexpr std::string_view kServerName = "phonefarm-agent";
// RFC 9112 §2.2: empty lines before a request-line are ignored, but a client
// must not hold a connection open by sending nothing else.
constexpr std::size_t kMaxLeadingEmptyLineBytes = 32;

// The server owns framing and connection management; a handler header that
// contradicted it (or carried CR/LF) would corrupt the response stream.
bool extraHeaderAllowed(std::string_view name, std::string_view value) {
  if (name.empty() || name.find_first_of("\r\n:") != std::string_view::npos) return false;
  if (value.find_first_of("\r\n") != std::string_view::npos) return false;
  return !iequals(name, "content-length") && !iequals(name, "transfer-encoding") && !iequals(name, "connection");
}

bool isHttpProtocolError(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category();
}

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

template <class Stream>
class BeastSession final : public HttpSession,
                           public ResponseTarget,
                           public std::enable_shared_from_this<BeastSession<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  BeastSession(tcp::socket socket, SessionHost& host, std::string peer, std::shared_ptr<ssl::context> tls)
      : host_(host), tls_(std::move(tls)), stream_(makeStream(std::move(socket), tls_.get())), peer_(std::move(peer)) {}

  void start() override {
    tcpLayer().expires_after(opts().first_request_timeout);
    if constexpr (kTls) {
      doHandshake();
    } else {
      doIdleRead();
    }
  }

  void onServerShutdown() override {
    // A connection accepted but not yet used is a client whose request may be
    // on its way (a restart under socket activation must answer it, not drop
    // it): it gets its first request answered with Connection: close, within
    // the first-request deadline it already has (the server's shutdown grace
    // bounds it too). So does a kept-alive connection whose next request has
    // arrived unread. Any other idle connection closes at once; a stream is
    // resumable (Last-Event-ID) and does not hold up a shutdown.
    if (state_ == State::kIdle && (first_request_ || requestBytesWaiting())) return;
    if (state_ == State::kIdle || state_ == State::kHandshaking || state_ == State::kStreaming) closeNow();
  }

  void forceClose() override { closeNow(); }

  const std::string& peer() const override { return peer_; }

  // Runs on the io_context thread (posted by ResponderState).
  void onResponse(HttpResponse response) override {
    if (state_ != State::kHandling) {  // force-closed meanwhile
      if (response.stream && response.stream->source) response.stream->source->stop();
      return;
    }
    if (response.stream) return writeStreamHead(std::move(response));
    const bool refused = response.status == 401 || response.status == 403;
    writeResponse(std::move(response), request_keep_alive_ && !refused && !host_.shuttingDown());
  }

 private:
  enum class State {
    kHandshaking,
    kIdle,
    kReadingHeader,
    kReadingBody,
    kHandling,
    kWriting,
    kStreaming,
    kLingering,
    kClosed
  };

  // How a BodyStream's wake reaches the session from any thread: one post
  // at a time, however often it is called.
  struct StreamWake {
    std::weak_ptr<BeastSession> session;
    std::shared_ptr<PostGate> gate;
    std::atomic<bool> pending{false};
  };

  static Stream makeStream(tcp::socket socket, ssl::context* tls) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *tls);
    } else {
      return Stream(std::move(socket));
    }
  }

  // Deadlines and the socket live on the TCP layer under TLS.
  beast::tcp_stream& tcpLayer() { return beast::get_lowest_layer(stream_); }
  const HttpServerOptions& opts() const { return host_.options(); }

  // Bounded like a request header: a client that connects and never finishes
  // the handshake (or speaks plain HTTP to us) must not hold a slot.
  void doHandshake() {
    state_ = State::kHandshaking;  // under start()'s first-request deadline
    stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
      if (self->state_ == State::kClosed) return;
      if (ec) {
        // Scanners, plain-HTTP clients, old TLS versions: routine, not errors.
        self->host_.countTlsHandshakeFailure();
        spdlog::debug("http.tls.handshake_failed peer={} error=\"{}\"", self->peer_, ec.message());
        return self->closeNow();
      }
      self->doIdleRead();
    });
  }

  void doIdleRead() {
    state_ = State::kIdle;
    if (!skipLeadingEmptyLines()) return respondErrorAndClose(400, "Malformed HTTP request");
    if (buffer_.size() > 0) return doReadHeader();  // a pipelined request is already here
    // A fresh connection stays under start()'s first-request deadline: a
    // client that connects and stays silent must not hold a slot for idle_timeout.
    if (!first_request_) tcpLayer().expires_after(opts().idle_timeout);
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                              if (self->state_ == State::kClosed) return;
                              self->buffer_.commit(n);
                              if (ec) return self->closeNow();  // eof, idle timeout, reset: nobody to answer
                              if (!self->skipLeadingEmptyLines()) {
                                return self->respondErrorAndClose(400, "Malformed HTTP request");
                              }
                              if (self->buffer_.size() == 0) return self->doIdleRead();  // only CR/LF so far
                              self->doReadHeader();
                            });
  }

  bool requestBytesWaiting() {
    beast::error_code ec;
    return buffer_.size() > 0 || tcpLayer().socket().available(ec) > 0;
  }

  // Drops CR and LF bytes in front of the next request-line; false once a
  // client has sent more of them than any sane one would.
  bool skipLeadingEmptyLines() {
    const auto data = buffer_.data();
    const auto* bytes = static_cast<const char*>(data.data());
    std::size_t n = 0;
    while (n < data.size() && (bytes[n] == '\r' || bytes[n] == '\n')) ++n;
    buffer_.consume(n);
    leading_empty_bytes_ += n;
    return leading_empty_bytes_ <= kMaxLeadingEmptyLineBytes;
  }

  void doReadHeader() {
    state_ = State::kReadingHeader;
    started_ = Clock::now();
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    // Also rejects a Content-Length above the limit as soon as the header is parsed.
    parser_->body_limit(opts().max_body_bytes);
    if (!first_request_) tcpLayer().expires_after(opts().header_timeout);
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->onHeader(ec); });
  }

  void onHeader(beast::error_code ec) {
    if (state_ == State::kClosed) return;
    if (ec) return onReadError(ec);
    first_request_ = false;
    leading_empty_bytes_ = 0;
    host_.requestStarted(*this);
    if (auto refused = checkHead()) return respondErrorAndClose(refused->status, refused->detail);
    if (parser_->is_done()) return dispatch();
    state_ = State::kReadingBody;
    tcpLayer().expires_after(opts().request_timeout);
    const auto& header = parser_->get();
    // No 1xx to an HTTP/1.0 client (RFC 9110 §15.2), and none before the
    // request is known to be authorised and routed.
    if (header.version() >= 11 && iequals(header[bhttp::field::expect], "100-continue")) {
      if (opts().preflight) {
        HttpRequest head = requestFromHeader(header);
        if (auto refusal = opts().preflight(head)) {
          log_method_ = head.method;
          log_path_ = head.target.substr(0, head.target.find('?'));
          version_ = header.version();
          is_head_ = false;
          request_consumed_ = false;
          return writeResponse(std::move(*refusal), false);
        }
      }
      return writeContinue();
    }
    doReadBody();
  }

  // RFC 9112 framing and Host rules on the complete header, and the target in
  // origin-form; an error refuses the request and closes the connection, so a
  // body framed two ways is never read as a second request.
  std::optional<FramingError> checkHead() {
    const auto& header = parser_->get();
    std::vector<std::string_view> codings;
    for (auto [it, end] = header.equal_range(bhttp::field::transfer_encoding); it != end; ++it) {
      codings.push_back(it->value());
    }
    const bool has_length = header.find(bhttp::field::content_length) != header.end();
    if (auto bad = checkTransferEncoding(codings, has_length, header.version())) return bad;
    std::vector<std::string_view> hosts;
    for (auto [it, end] = header.equal_range(bhttp::field::host); it != end; ++it) hosts.push_back(it->value());
    if (auto bad = checkHost(hosts, header.version())) return bad;
    auto origin = toOriginForm(header.target());
    if (!origin) return FramingError{400, "Malformed request target"};
    target_ = std::move(*origin);
    return std::nullopt;
  }

  HttpRequest requestFromHeader(const bhttp::request<bhttp::string_body>& message) const {
    HttpRequest request;
    request.method = std::string(message.method_string());
    request.target = target_;
    request.authorization = std::string(message[bhttp::field::authorization]);
    request.content_type = std::string(message[bhttp::field::content_type]);
    request.accept = std::string(message[bhttp::field::accept]);
    request.last_event_id = std::string(message["Last-Event-ID"]);
    request.if_none_match = std::string(message[bhttp::field::if_none_match]);
    request.peer = peer_;
    return request;
  }

  // The client waits for this before sending the body (curl does for large ones).
  void writeContinue() {
    continue_.emplace(bhttp::status::continue_, parser_->get().version());
    bhttp::async_write(stream_, *continue_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->continue_.reset();
      if (self->state_ == State::kClosed) return;
      if (ec) return self->closeNow();
      self->doReadBody();
    });
  }

  void doReadBody() {
    bhttp::async_read(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (self->state_ == State::kClosed) return;
      if (ec) return self->onReadError(ec);
      self->dispatch();
    });
  }

  void onReadError(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) return respondErrorAndClose(413, "Request body too large");
    if (ec == bhttp::error::header_limit) return respondErrorAndClose(431, "Request header fields too large");
    if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message || !isHttpProtocolError(ec)) {
      // The client went away or timed out (tcp_stream has closed the socket).
      if (ec == beast::error::timeout) spdlog::debug("http.connection.timeout peer={}", peer_);
      return closeNow();
    }
    respondErrorAndClose(400, "Malformed HTTP request");
  }

  void respondErrorAndClose(int status, std::string_view detail) {
    // The start line may have been parsed before the error; log what we know.
    log_method_ = "-";
    log_path_ = "-";
    if (parser_) {
      const auto& header = parser_->get();
      if (!header.method_string().empty()) log_method_ = std::string(header.method_string());
      if (!header.target().empty()) log_path_ = std::string(header.target().substr(0, header.target().find('?')));
      if (header.version() == 10) version_ = 10;
    }
    is_head_ = false;
    request_consumed_ = false;
    writeResponse(detailResponse(status, detail), false);
  }

  void dispatch() {
    state_ = State::kHandling;
    tcpLayer().expires_never();
    host_.countRequest();
    const bool chunked = parser_->chunked();
    const auto content_length = parser_->content_length();
    request_consumed_ = true;
    auto message = parser_->release();
    parser_.reset();
    request_keep_alive_ = message.keep_alive();
    version_ = message.version();
    is_head_ = message.method() == bhttp::verb::head;

    HttpRequest request = requestFromHeader(message);
    request.body = std::move(message.body());
    request.has_body = !request.body.empty() || chunked || (content_length && *content_length > 0);
    log_method_ = request.method;
    log_path_ = request.target.substr(0, request.target.find('?'));

    auto state =
        std::make_shared<ResponderState>(std::weak_ptr<ResponseTarget>(this->shared_from_this()), host_.gate());
    Responder responder = [state](HttpResponse response) { state->answer(std::move(response)); };
    try {
      host_.handler()(std::move(request), std::move(responder));
    } catch (const std::exception& e) {
      spdlog::error("http.handler.failed path={} error={}", log_path_, e.what());
      state->answerIfUnanswered(detailResponse(500, "Internal error"));
    } catch (...) {
      spdlog::error("http.handler.failed path={} error=unknown", log_path_);
      state->answerIfUnanswered(detailResponse(500, "Internal error"));
    }
  }

  void writeResponse(HttpResponse response, bool keep_alive) {
    state_ = State::kWriting;
    log_status_ = (response.status >= 200 && response.status <= 599) ? response.status : 500;
    log_principal_ = response.log_principal.empty() ? "-" : std::move(response.log_principal);

    bhttp::response<bhttp::string_body> res;
    res.version(version_);
    res.result(static_cast<unsigned>(log_status_));
    res.set(bhttp::field::server, kServerName);
    res.set(bhttp::field::date, httpDate(std::chrono::system_clock::now()));
    if (!response.content_type.empty()) res.set(bhttp::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) {
      if (extraHeaderAllowed(name, value)) {
        res.insert(name, value);
      } else {
        spdlog::error("http.response.header_rejected path={} name={}", log_path_, name);
      }
    }
    // These statuses must not carry a body (prepare_payload would throw).
    if (log_status_ == 204 || log_status_ == 304) response.body.clear();
    res.body() = std::move(response.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    if (is_head_) res.body().clear();  // HEAD: the Content-Length of the GET, no body
    response_.emplace(std::move(res));

    tcpLayer().expires_after(opts().request_timeout);
    bhttp::async_write(stream_, *response_,
                       [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->onWritten(ec); });
  }

  void writeStreamHead(HttpResponse response) {
    stream_body_ = std::move(*response.stream);
    if (!stream_body_->source || is_head_ || response.status < 200 || response.status > 299) {
      // Not streamable: answer with the head alone (no body), and end.
      if (stream_body_->source) stream_body_->source->stop();
      stream_body_.reset();
      response.stream.reset();
      response.body.clear();
      return writeResponse(std::move(response), false);
    }
    state_ = State::kStreaming;
    log_status_ = response.status;
    log_principal_ = response.log_principal.empty() ? "-" : std::move(response.log_principal);
    stream_head_.emplace();
    auto& head = *stream_head_;
    head.version(version_);
    head.result(static_cast<unsigned>(response.status));
    head.set(bhttp::field::server, kServerName);
    head.set(bhttp::field::date, httpDate(std::chrono::system_clock::now()));
    if (!response.content_type.empty()) head.set(bhttp::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) {
      if (extraHeaderAllowed(name, value)) head.insert(name, value);
    }
    head.keep_alive(false);  // no Content-Length: the body ends with the connection
    stream_head_sr_.emplace(head);
    tcpLayer().expires_after(opts().request_timeout);
    bhttp::async_write_header(stream_, *stream_head_sr_,
                              [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                                if (self->state_ != State::kStreaming) return;
                                if (ec) return self->closeNow();
                                self->stream_head_sr_.reset();
                                self->stream_head_.reset();
                                self->tcpLayer().expires_never();
                                self->watchStreamClient();
                                auto wake = std::make_shared<StreamWake>();
                                wake->session = self->weak_from_this();
                                wake->gate = self->host_.gate();
                                self->stream_body_->source->start([wake] {
                                  if (wake->pending.exchange(true)) return;
                                  wake->gate->post([wake] {
                                    wake->pending = false;
                                    if (auto s = wake->session.lock()) s->pumpStream();
                                  });
                                });
                                self->pumpStream();
                              });
  }

  // A stream's client sends nothing more; a read that completes means it
  // left (or broke the protocol): either way the stream ends.
  void watchStreamClient() {
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = this->shared_from_this()](beast::error_code, std::size_t) {
                              if (self->state_ == State::kStreaming) self->closeNow();
                            });
  }

  void pumpStream() {
    if (state_ != State::kStreaming || stream_writing_ || !stream_body_) return;
    if (stream_ending_) return closeNow();  // its last bytes are written
    std::string out;
    if (!stream_body_->source->pull(out)) stream_ending_ = true;
    if (!out.empty()) return writeStreamBytes(std::move(out));
    if (stream_ending_) return closeNow();
    armHeartbeat();
  }

  void armHeartbeat() {
    if (stream_body_->heartbeat.empty()) return;
    if (!heartbeat_timer_) heartbeat_timer_.emplace(stream_.get_executor());
    heartbeat_timer_->expires_after(stream_body_->heartbeat_interval);
    heartbeat_timer_->async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (ec || self->state_ != State::kStreaming || self->stream_writing_) return;
      self->writeStreamBytes(self->stream_body_->heartbeat);
    });
  }

  void writeStreamBytes(std::string bytes) {
    stream_writing_ = true;
    stream_out_ = std::move(bytes);
    if (heartbeat_timer_) heartbeat_timer_->cancel();
    tcpLayer().expires_after(opts().request_timeout);
    boost::asio::async_write(stream_, boost::asio::buffer(stream_out_),
                             [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                               self->stream_writing_ = false;
                               if (self->state_ != State::kStreaming) return;
                               if (ec) return self->closeNow();  // the client stopped reading, or left
                               self->tcpLayer().expires_never();
                               self->pumpStream();
                             });
  }

  void onWritten(beast::error_code ec) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_).count();
    spdlog::info("http.request method={} path={} status={} us={} principal={}", log_method_, log_path_, log_status_, us,
                 log_principal_);
    const bool keep_alive = response_->keep_alive();
    response_.reset();
    if (state_ == State::kClosed) return;
    if (ec) return closeNow();
    host_.requestEnded(*this);  // idle again; lingering before a close counts too
    // Shutdown may have begun while a keep-alive response was being written.
    if (!keep_alive || host_.shuttingDown()) return closeAfterResponse();
    version_ = 11;
    is_head_ = false;
    doIdleRead();
  }

  void closeAfterResponse() {
    beast::error_code ec;
    const auto unread = tcpLayer().socket().available(ec);
    const bool clean = !ec && request_consumed_ && buffer_.size() == 0 && unread == 0;
    if constexpr (kTls) {
      if (clean) return doTlsShutdown();
    }
    if (ec || clean) return closeNow();
    // Unread input: FIN (without close_notify under TLS; the response is
    // Content-Length framed) and drain the raw bytes, as for plain HTTP.
    state_ = State::kLingering;
    tcpLayer().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return closeNow();
    buffer_.clear();                           // unanswered pipelined bytes are dropped with the connection
    tcpLayer().expires_after(kLingerTimeout);  // bounds the whole drain, not each read
    doDrain();
  }

  // close_notify, then the peer's, within the linger time. Clients that just
  // close the TCP connection (most do) make this fail: normal, not logged.
  void doTlsShutdown() {
    state_ = State::kLingering;
    tcpLayer().expires_after(kLingerTimeout);
    if constexpr (kTls) {
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code ec) {
        if (self->state_ == State::kClosed) return;
        if (ec) spdlog::trace("http.tls.shutdown peer={} error=\"{}\"", self->peer_, ec.message());
        self->closeNow();
      });
    }
  }

  void doDrain() {
    tcpLayer().async_read_some(buffer_.prepare(kReadChunk),
                               [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                                 if (self->state_ == State::kClosed) return;
                                 self->buffer_.commit(n);
                                 self->buffer_.clear();
                                 if (ec) return self->closeNow();  // eof: the client has closed too
                                 self->doDrain();
                               });
  }

  void closeNow() {
    if (state_ == State::kClosed) return;
    const bool streaming = state_ == State::kStreaming;
    state_ = State::kClosed;
    if (heartbeat_timer_) heartbeat_timer_->cancel();
    if (stream_body_ && stream_body_->source) std::exchange(stream_body_->source, nullptr)->stop();
    if (streaming) {
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_).count();
      spdlog::info("http.request method={} path={} status={} us={} principal={} streamed=true", log_method_, log_path_,
                   log_status_, us, log_principal_);
    }
    auto keep = this->shared_from_this();  // sessionEnded() drops the host's reference
    beast::error_code ec;
    tcpLayer().socket().shutdown(tcp::socket::shutdown_send, ec);
    tcpLayer().close();  // also cancels pending operations and the deadline
    host_.sessionEnded(*this);
  }

  SessionHost& host_;
  std::shared_ptr<ssl::context> tls_;  // null for plain HTTP; outlives stream_
  Stream stream_;
  beast::flat_buffer buffer_;
  std::string peer_;
  State state_ = State::kIdle;
  bool first_request_ = true;
  std::size_t leading_empty_bytes_ = 0;
  std::string target_;  // the request's target in origin-form (checkHead)
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<bhttp::response<bhttp::empty_body>> continue_;
  std::optional<bhttp::response<bhttp::string_body>> response_;
  // A streamed response (HttpResponse::stream).
  std::optional<StreamingBody> stream_body_;
  std::optional<bhttp::response<bhttp::empty_body>> stream_head_;
  std::optional<bhttp::response_serializer<bhttp::empty_body>> stream_head_sr_;
  std::optional<boost::asio::steady_timer> heartbeat_timer_;
  std::string stream_out_;  // the bytes being written
  bool stream_writing_ = false;
  bool stream_ending_ = false;
  // About the request being answered.
  unsigned version_ = 11;
  bool request_keep_alive_ = false;
  bool is_head_ = false;
  bool request_consumed_ = false;  // false after an error answered mid-request
  Clock::time_point started_{};
  std::string log_method_ = "-";
  std::string log_path_ = "-";
  int log_status_ = 0;
  std::string log_principal_ = "-";
};

}  // namespace

std::shared_ptr<HttpSession> makeHttpSession(tcp::socket socket, SessionHost& host, std::string peer,
                                             std::shared_ptr<ssl::context> tls) {
  if (tls) return std::make_shared<BeastSession<TlsStream>>(std::move(socket), host, std::move(peer), std::move(tls));
  return std::make_shared<BeastSession<beast::tcp_stream>>(std::move(socket), host, std::move(peer), nullptr);
}

}  // namespace phonefarm::http::detail
