// Builds the listener's SSL_CTX from the PEM files named in [http]. Files are
// read through one open descriptor (fstat on it, so the mode we check is the
// mode of what we read), and every failure becomes one line that says which
// key and file, and what to do.
#include "agent/http/tls_context.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace phonefarm::http {
namespace {

// A certificate chain or key is a few KiB; anything this big is a wrong path.
constexpr off_t kMaxPemBytes = 1024 * 1024;

// TLS 1.2 suites: forward secret AEAD only (TLS 1.3 keeps OpenSSL's defaults,
// which are all of that kind).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Key material must not linger in freed heap memory.
class SecretBuffer {
 public:
  SecretBuffer() = default;
  SecretBuffer(const SecretBuffer&) = delete;
  SecretBuffer& operator=(const SecretBuffer&) = delete;
  ~SecretBuffer() {
    if (!data_.empty()) OPENSSL_cleanse(data_.data(), data_.size());
  }
  std::string& str() { return data_; }

 private:
  std::string data_;
};

// The most specific OpenSSL reason queued, and an empty queue afterwards.
std::string opensslReason() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : "error " + std::to_string(code);
}

[[noreturn]] void fail(std::string_view key, const std::filesystem::path& file, const std::string& what) {
  ERR_clear_error();
  throw ConfigError("http." + std::string(key) + " " + file.string() + ": " + what);
}

std::string modeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

void readPem(std::string_view key, const std::filesystem::path& file, bool secret, std::string& out) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) fail(key, file, std::string("cannot open: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(key, file, std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(key, file, "not a regular file");
  if (secret && (st.st_mode & S_IRWXO) != 0) {
    fail(key, file, "is accessible by others (mode " + modeText(st.st_mode) + "); chmod o-rwx it");
  }
  if (st.st_size > kMaxPemBytes) fail(key, file, "larger than 1 MiB, not a PEM file");
  out.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(key, file, std::string("read error: ") + std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
}

BioPtr memBio(const std::string& pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

std::string subjectOf(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string notAfterOf(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), X509_get0_notAfter(cert));
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// Never prompt on a terminal for a passphrase: an encrypted key just fails.
int noPassphrase(char*, int, int, void*) { return 0; }

}  // namespace

void SslCtxFree::operator()(ssl_ctx_st* ctx) const { SSL_CTX_free(ctx); }

TlsServerContext loadTlsServerContext(const TlsFiles& files) {
  ERR_clear_error();
  TlsServerContext out;
  out.ctx.reset(SSL_CTX_new(TLS_server_method()));
  if (!out.ctx) throw ConfigError("tls: cannot create an OpenSSL context: " + opensslReason());
  SSL_CTX* ctx = out.ctx.get();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Idle keep-alive connections then hold no read/write buffers.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
    throw ConfigError("tls: cipher list rejected: " + opensslReason());
  }

  std::string cert_pem;
  readPem("tls_cert", files.cert, /*secret=*/false, cert_pem);
  BioPtr cert_bio = memBio(cert_pem);
  X509Ptr leaf(PEM_read_bio_X509_AUX(cert_bio.get(), nullptr, noPassphrase, nullptr));
  if (!leaf) fail("tls_cert", files.cert, "no PEM certificate in it (" + opensslReason() + ")");
  if (SSL_CTX_use_certificate(ctx, leaf.get()) != 1) {
    fail("tls_cert", files.cert, "certificate refused: " + opensslReason());
  }
  out.chain_certificates = 1;
  for (;;) {
    X509Ptr next(PEM_read_bio_X509(cert_bio.get(), nullptr, noPassphrase, nullptr));
    if (!next) break;
    if (SSL_CTX_add1_chain_cert(ctx, next.get()) != 1) {
      fail("tls_cert", files.cert, "chain certificate refused: " + opensslReason());
    }
    ++out.chain_certificates;
  }
  // The loop ends on "no start line" at the end of the file; anything else
  // (a truncated or corrupt block) is an error.
  const unsigned long end = ERR_peek_last_error();
  if (end != 0 && !(ERR_GET_LIB(end) == ERR_LIB_PEM && ERR_GET_REASON(end) == PEM_R_NO_START_LINE)) {
    fail("tls_cert", files.cert,
         "certificate " + std::to_string(out.chain_certificates + 1) + " cannot be read (" + opensslReason() + ")");
  }
  ERR_clear_error();

  SecretBuffer key_pem;
  readPem("tls_key", files.key, /*secret=*/true, key_pem.str());
  BioPtr key_bio = memBio(key_pem.str());
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, noPassphrase, nullptr));
  if (!key) {
    fail("tls_key", files.key,
         "no usable PEM private key in it (" + opensslReason() + "; passphrase-protected keys are not supported)");
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    fail("tls_key", files.key, "does not match the certificate in " + files.cert.string());
  }

  out.subject = subjectOf(leaf.get());
  out.not_after = notAfterOf(leaf.get());
  return out;
}

}  // namespace phonefarm::http
