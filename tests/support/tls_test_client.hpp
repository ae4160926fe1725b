// TlsTestClient: a blocking OpenSSL client for tests of the agent's TLS
// listener, with the knobs a test needs (protocol versions, trust anchor,
// host name to verify) and every read/write bounded by SO_RCVTIMEO and
// SO_SNDTIMEO so a wedged server fails the test instead of hanging it. Speaks
// just enough HTTP/1.1 to read Content-Length framed responses. Header-only:
// unit tests do not link tests/support.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace phonefarm::testtls {

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct ClientOptions {
  std::string ca_file;      // trust anchor; "" = verify nothing
  std::string verify_host;  // DNS name to check ("" = none); also sent as SNI
  int min_version = TLS1_2_VERSION;
  int max_version = 0;        // 0 = the newest
  bool allow_legacy = false;  // @SECLEVEL=0, so this client can offer TLS 1.0/1.1 at all
  std::chrono::milliseconds io_timeout{5000};
};

class TlsTestClient {
 public:
  TlsTestClient(std::uint16_t port, const ClientOptions& options) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(options.io_timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((options.io_timeout.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      error_ = "connect failed";
      return;
    }
    ERR_clear_error();
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_min_proto_version(ctx_.get(), options.min_version);
    if (options.max_version != 0) SSL_CTX_set_max_proto_version(ctx_.get(), options.max_version);
    if (options.allow_legacy) SSL_CTX_set_cipher_list(ctx_.get(), "DEFAULT:@SECLEVEL=0");
    if (!options.ca_file.empty()) {
      SSL_CTX_load_verify_locations(ctx_.get(), options.ca_file.c_str(), nullptr);
      SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    }
    ssl_.reset(SSL_new(ctx_.get()));
    if (!options.verify_host.empty()) {
      SSL_set_tlsext_host_name(ssl_.get(), options.verify_host.c_str());
      X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl_.get()), options.verify_host.c_str(), 0);
    }
    SSL_set_fd(ssl_.get(), fd_);
    if (SSL_connect(ssl_.get()) != 1) {
      error_ = lastError();
      if (error_.empty()) error_ = "handshake failed (connection closed)";
      return;
    }
    connected_ = true;
  }
  ~TlsTestClient() {
    ssl_.reset();
    if (fd_ >= 0) ::close(fd_);
  }
  TlsTestClient(const TlsTestClient&) = delete;
  TlsTestClient& operator=(const TlsTestClient&) = delete;

  bool connected() const { return connected_; }
  const std::string& error() const { return error_; }
  std::string protocol() const { return connected_ ? SSL_get_version(ssl_.get()) : ""; }
  std::string cipher() const { return connected_ ? SSL_get_cipher_name(ssl_.get()) : ""; }
  bool compressed() const { return connected_ && SSL_get_current_compression(ssl_.get()) != nullptr; }
  SSL* ssl() const { return ssl_.get(); }

  bool send(std::string_view bytes) {
    if (!connected_) return false;
    while (!bytes.empty()) {
      const int n = SSL_write(ssl_.get(), bytes.data(), static_cast<int>(bytes.size()));
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // One Content-Length framed response; nullopt on close, error or timeout.
  std::optional<Response> readResponse() {
    std::size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!readMore()) return std::nullopt;
    }
    Response r;
    const std::string head = buffer_.substr(0, head_end);
    buffer_.erase(0, head_end + 4);
    if (head.size() < 12 || head.compare(0, 5, "HTTP/") != 0) return std::nullopt;
    r.status = std::stoi(head.substr(9, 3));
    std::size_t pos = head.find("\r\n");
    while (pos != std::string::npos && pos + 2 < head.size()) {
      const std::size_t next = head.find("\r\n", pos + 2);
      const std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        r.headers[name] = value;
      }
      pos = next;
    }
    const std::size_t length = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
    while (buffer_.size() < length) {
      if (!readMore()) return std::nullopt;
    }
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return r;
  }

  // Sends a GET and reads its response.
  std::optional<Response> get(const std::string& target, const std::string& extra_headers = "") {
    if (!send("GET " + target + " HTTP/1.1\r\nHost: test\r\n" + extra_headers + "\r\n")) return std::nullopt;
    return readResponse();
  }

  // True when the server ends the TLS session or the connection (close_notify,
  // FIN or RST) within the io timeout; false if data arrives or nothing does.
  bool waitClosed() {
    char c;
    const int n = SSL_read(ssl_.get(), &c, 1);
    if (n > 0) return false;
    const int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_ZERO_RETURN) return true;
    if (err == SSL_ERROR_SYSCALL) return errno != EAGAIN && errno != EWOULDBLOCK;
    return err == SSL_ERROR_SSL;  // e.g. unexpected EOF
  }

 private:
  struct CtxFree {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
  };

  bool readMore() {
    char buf[16384];
    const int n = SSL_read(ssl_.get(), buf, sizeof buf);
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  static std::string lastError() {
    const unsigned long code = ERR_peek_last_error();
    ERR_clear_error();
    if (code == 0) return "";
    const char* reason = ERR_reason_error_string(code);
    return reason != nullptr ? reason : "error " + std::to_string(code);
  }

  int fd_ = -1;
  std::unique_ptr<SSL_CTX, CtxFree> ctx_;
  std::unique_ptr<SSL, SslFree> ssl_;
  bool connected_ = false;
  std::string error_;
  std::string buffer_;
};

}  // namespace phonefarm::testtls
