// A throwaway PKI for TLS tests, made at run time with the OpenSSL API (no
// `openssl` CLI, no checked-in keys): a self-signed CA and a server
// certificate it signs, with the subjectAltName the test asks for. Also a
// second, unrelated key (for mismatch tests). Header-only so unit tests, which
// do not link tests/support, can use it too.
#pragma once

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace phonefarm::testpki {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

inline PkeyPtr newKey() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) throw std::runtime_error("EVP_EC_gen failed");
  return key;
}

inline void addExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) throw std::runtime_error("bad extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// issuer == nullptr: self-signed CA. Otherwise a server certificate with `san`.
inline X509Ptr makeCert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                        const std::string& san) {
  static std::atomic<long> serial{1000};
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7 * 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  addExtension(cert.get(), signer, NID_subject_key_identifier, "hash");
  if (issuer == nullptr) {
    addExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    addExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    addExtension(cert.get(), signer, NID_authority_key_identifier, "keyid");
    addExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    addExtension(cert.get(), signer, NID_key_usage, "critical,digitalSignature");
    addExtension(cert.get(), signer, NID_ext_key_usage, "serverAuth");
    addExtension(cert.get(), signer, NID_subject_alt_name, san);
  }
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    throw std::runtime_error("X509_sign failed");
  }
  return cert;
}

inline std::string toPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

inline std::string toPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// Exactly `mode`, whatever the umask.
inline void writeWithMode(const std::filesystem::path& path, const std::string& content, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path.string());
  const bool ok =
      ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) && ::fchmod(fd, mode) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + path.string());
}

struct Files {
  std::filesystem::path ca;         // the CA certificate (trust anchor for clients)
  std::filesystem::path cert;       // server certificate chain: leaf, then the CA
  std::filesystem::path key;        // the server key, mode 0600
  std::filesystem::path other_key;  // an unrelated key, mode 0600
};

// Writes <prefix>ca.pem, <prefix>cert.pem, <prefix>key.pem and
// <prefix>other-key.pem into dir. `san` as in openssl.cnf, e.g.
// "IP:127.0.0.1,DNS:localhost".
inline Files writePki(const std::filesystem::path& dir, const std::string& prefix = "",
                      const std::string& san = "IP:127.0.0.1,DNS:localhost", const std::string& cn = "phonefarm-test") {
  PkeyPtr ca_key = newKey();
  X509Ptr ca = makeCert(ca_key.get(), cn + " CA", nullptr, nullptr, "");
  PkeyPtr key = newKey();
  X509Ptr leaf = makeCert(key.get(), cn, ca.get(), ca_key.get(), san);
  PkeyPtr other = newKey();
  Files f{dir / (prefix + "ca.pem"), dir / (prefix + "cert.pem"), dir / (prefix + "key.pem"),
          dir / (prefix + "other-key.pem")};
  writeWithMode(f.ca, toPem(ca.get()), 0644);
  writeWithMode(f.cert, toPem(leaf.get()) + toPem(ca.get()), 0644);
  writeWithMode(f.key, toPem(key.get()), 0600);
  writeWithMode(f.other_key, toPem(other.get()), 0600);
  return f;
}

}  // namespace phonefarm::testpki
