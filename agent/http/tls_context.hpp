// The listener's TLS setup: reads [http] tls_cert / tls_key, checks them the
// way an operator needs to hear about (unreadable, not PEM, key readable by
// others, key not matching the certificate) and builds the OpenSSL server
// context with our protocol policy: TLS 1.2 minimum, no compression, no
// renegotiation, server cipher preference over a modern AEAD-only list.
//
// Used at start-up (HttpServer::start), by `phonefarm-agent check-config`, and
// on SIGHUP (HttpServer::reloadTls). Only OpenSSL's opaque context type is
// named here; the Asio SSL wrapper stays inside http_server.cpp.
#pragma once

#include <memory>
#include <string>

#include "common/config/config.hpp"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace phonefarm::http {

struct SslCtxFree {
  void operator()(ssl_ctx_st* ctx) const;
};
using SslCtxPtr = std::unique_ptr<ssl_ctx_st, SslCtxFree>;

struct TlsServerContext {
  SslCtxPtr ctx;
  std::string subject;                 // the leaf certificate's subject, one line, for logs
  std::string not_after;               // its expiry as OpenSSL prints it, for logs
  std::size_t chain_certificates = 0;  // leaf included
};

// Throws ConfigError with one line naming the config key, the file and what
// is wrong with it.
TlsServerContext loadTlsServerContext(const TlsFiles& files);

}  // namespace phonefarm::http
