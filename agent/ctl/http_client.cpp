// httpRequest over Boost.Beast; see http_client.hpp. Each step runs as an
// asynchronous operation on a private io_context, one at a time, because only
// those honour beast::tcp_stream's deadline (its synchronous calls never time
// out): one expires_after before connecting bounds connect, TLS handshake,
// write and read together. Asio sends with MSG_NOSIGNAL and feeds OpenSSL
// through memory buffers, so a vanished agent is an error, never a SIGPIPE.
#include "agent/ctl/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cstring>
#include <stdexcept>

#include "agent/ctl/response_parser.hpp"

namespace phonefarm::ctl {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;

bool isTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool hasCtl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

bool isIpLiteral(const std::string& host) {
  in6_addr a6{};
  in_addr a4{};
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// Runs one asynchronous operation to its end; returns its error.
template <class Start>
beast::error_code runOne(asio::io_context& io, Start&& start) {
  beast::error_code result;
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  io.restart();
  io.run();
  return result;
}

// OpenSSL's reason for a TLS error code; "" for any other error.
std::string sslReason(const beast::error_code& ec) {
  if (ec.category() != asio::error::get_ssl_category()) return "";
  const char* reason = ERR_reason_error_string(static_cast<unsigned long>(static_cast<unsigned>(ec.value())));
  return reason != nullptr ? reason : "error " + std::to_string(ec.value());
}

bool isClose(const beast::error_code& ec) { return ec == asio::error::eof || ec == ssl::error::stream_truncated; }

// A socket or TLS error after the handshake, in words.
std::string ioFailure(const beast::error_code& ec) {
  std::string reason = sslReason(ec);
  if (!reason.empty()) return reason;
  if (isClose(ec)) return "the agent closed the connection";
  return ec.message();
}

// Why the handshake failed. A rejected certificate says why (OpenSSL's
// verify result: "self-signed certificate in certificate chain", "hostname
// mismatch", ...) rather than only that it was rejected.
std::string handshakeFailure(SSL* session, const beast::error_code& ec) {
  const long verify = SSL_get_verify_result(session);
  std::string reason = sslReason(ec);
  if (verify != X509_V_OK && (reason.empty() || reason == "certificate verify failed")) {
    return std::string("certificate verify failed (") + X509_verify_cert_error_string(verify) + ")";
  }
  // What OpenSSL says when the agent answered in plain HTTP.
  if (reason == "wrong version number") return reason + " (the agent does not speak TLS on this port; try http://)";
  if (!reason.empty()) return reason;
  if (isClose(ec)) return "the agent closed the connection";
  return ec.message();
}

Request buildRequest(const Url& url, std::string_view method, std::string_view target, std::string_view body,
                     const HeaderList& headers) {
  if (hasCtl(method) || hasCtl(target) || method.find(' ') != std::string_view::npos ||
      target.find(' ') != std::string_view::npos) {
    throw std::invalid_argument("bad method or target");
  }
  const http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) throw std::invalid_argument("bad method '" + std::string(method) + "'");
  Request req{verb, url.base_path + std::string(target), 11};
  req.set(http::field::host, url.hostHeader());
  req.set(http::field::user_agent, "phonefarmctl/" PHONEFARM_VERSION);
  req.set(http::field::accept, "application/json");
  req.set(http::field::connection, "close");
  for (const auto& [name, value] : headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), isTchar) || hasCtl(value)) {
      throw std::invalid_argument("bad request header '" + name + "'");
    }
    req.insert(name, value);
  }
  if (!body.empty() || verb == http::verb::post || verb == http::verb::put || verb == http::verb::patch) {
    req.body() = std::string(body);
    req.content_length(body.size());
  }
  return req;
}

// TLS 1.2 or newer, no compression or renegotiation, the peer verified
// against `ca_file` or the system store.
ssl::context clientContext(const TlsClientOptions& options, const std::string& where) {
  ERR_clear_error();
  try {
    ssl::context ctx(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    // No SSL_OP_IGNORE_UNEXPECTED_EOF: Asio sees the close before OpenSSL and
    // reports a missing close_notify itself (stream_truncated). The agent's
    // answers are Content-Length framed and read before its close, so only a
    // body that runs to the close needs the close_notify.
    SSL_CTX_set_options(ctx.native_handle(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    beast::error_code ec;
    if (options.ca_file.empty()) {
      ctx.set_default_verify_paths(ec);
    } else {
      ctx.load_verify_file(options.ca_file, ec);
    }
    if (ec) {
      throw TransportError("cannot load CA certificates from " +
                           (options.ca_file.empty() ? std::string("the system store") : options.ca_file) + ": " +
                           ioFailure(ec));
    }
    ctx.set_verify_mode(ssl::verify_peer);
    return ctx;
  } catch (const boost::system::system_error& e) {
    throw TransportError(where + "cannot create an OpenSSL context (" + ioFailure(e.code()) + ")");
  }
}

// The URL's host must be in the certificate. OpenSSL checks it while it
// verifies the chain (X509_VERIFY_PARAM), so a mismatch fails with its own
// verify result ("hostname mismatch", "IP address mismatch"), which a verify
// callback such as ssl::host_name_verification cannot set; partial wildcards
// ("f*.example") are refused. Names also go out as SNI.
void expectPeer(SSL* session, const Url& url, const std::string& where) {
  X509_VERIFY_PARAM* param = SSL_get0_param(session);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (isIpLiteral(url.host)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str()) != 1) {
      throw TransportError(where + "bad IP address " + url.host);
    }
    return;
  }
  if (X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), url.host.size()) != 1 ||
      SSL_set_tlsext_host_name(session, url.host.c_str()) != 1) {
    throw TransportError(where + "bad host name " + url.host);
  }
}

void connectTo(asio::io_context& io, beast::tcp_stream& stream, const Url& url, std::chrono::milliseconds timeout) {
  tcp::resolver resolver(io);
  beast::error_code ec;
  // No deadline here: a numeric host (the usual case) resolves at once.
  const auto endpoints = resolver.resolve(url.host, std::to_string(url.port),
                                          tcp::resolver::address_configured | tcp::resolver::numeric_service, ec);
  if (ec) throw TransportError("cannot resolve " + url.host + ": " + ec.message());
  stream.expires_after(timeout);
  ec = runOne(io, [&](auto handler) { stream.async_connect(endpoints, std::move(handler)); });
  if (ec == beast::error::timeout) throw TransportError("connection timed out");
  if (ec) throw TransportError(ec.message());
}

// Writes the request and reads the answer, skipping interim (1xx) ones.
template <class Stream>
HttpResponse roundTrip(asio::io_context& io, Stream& stream, const Request& req, const HttpLimits& limits) {
  beast::error_code ec = runOne(io, [&](auto handler) { http::async_write(stream, req, std::move(handler)); });
  if (ec == beast::error::timeout) throw TransportError("timed out sending the request");
  if (ec) throw TransportError("sending the request: " + ioFailure(ec));
  beast::flat_buffer buffer;
  for (;;) {
    BeastResponseParser parser;
    limitParser(parser, limits, req.method() == http::verb::head);
    ec = runOne(io, [&](auto handler) { http::async_read(stream, buffer, parser, std::move(handler)); });
    if (ec == beast::error::timeout) throw TransportError("timed out waiting for the response");
    if (ec) {
      const std::string parse_error = parseErrorText(ec);
      throw TransportError(parse_error.empty() ? "reading the response: " + ioFailure(ec) : parse_error);
    }
    if (parser.get().result_int() / 100 == 1) continue;
    return toHttpResponse(parser, limits);
  }
}

}  // namespace

HttpResponse httpRequest(const Url& url, std::string_view method, std::string_view target, std::string_view body,
                         const HeaderList& headers, std::chrono::milliseconds timeout, const HttpLimits& limits,
                         const TlsClientOptions& tls) {
  const Request req = buildRequest(url, method, target, body, headers);
  asio::io_context io;
  if (!url.https) {
    beast::tcp_stream stream(io);
    connectTo(io, stream, url, timeout);
    return roundTrip(io, stream, req, limits);
  }
  const std::string where = "TLS handshake with " + url.hostPort() + " failed: ";
  ssl::context ctx = clientContext(tls, where);
  beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
  expectPeer(stream.native_handle(), url, where);
  connectTo(io, beast::get_lowest_layer(stream), url, timeout);
  const beast::error_code ec =
      runOne(io, [&](auto handler) { stream.async_handshake(ssl::stream_base::client, std::move(handler)); });
  if (ec == beast::error::timeout) throw TransportError("TLS handshake with " + url.hostPort() + " timed out");
  if (ec) throw TransportError(where + handshakeFailure(stream.native_handle(), ec));
  return roundTrip(io, stream, req, limits);
}

}  // namespace phonefarm::ctl
