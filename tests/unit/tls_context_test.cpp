// loadTlsServerContext: a good certificate chain and key load; each mistake an
// operator makes with the files is a one-line ConfigError naming the config
// key, the file and the fix. The PKI is generated per test (tls_test_pki.hpp).
#include "agent/http/tls_context.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/support/tls_test_pki.hpp"

namespace phonefarm::http {
namespace {

using ::testing::HasSubstr;

class TlsContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pf-tls-context-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    pki_ = testpki::writePki(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The message of the ConfigError loading `files` throws ("" if none).
  static std::string loadError(const TlsFiles& files) {
    try {
      loadTlsServerContext(files);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  }

  std::filesystem::path dir_;
  testpki::Files pki_;
};

TEST_F(TlsContextTest, LoadsChainAndKeyWithTls12Minimum) {
  const TlsServerContext loaded = loadTlsServerContext({pki_.cert, pki_.key});
  ASSERT_NE(loaded.ctx, nullptr);
  EXPECT_EQ(loaded.chain_certificates, 2u);  // leaf + CA
  EXPECT_EQ(loaded.subject, "CN=phonefarm-test");
  EXPECT_FALSE(loaded.not_after.empty());
  EXPECT_EQ(SSL_CTX_get_min_proto_version(loaded.ctx.get()), TLS1_2_VERSION);
  const auto options = SSL_CTX_get_options(loaded.ctx.get());
  EXPECT_NE(options & SSL_OP_NO_COMPRESSION, 0u);
  EXPECT_NE(options & SSL_OP_NO_RENEGOTIATION, 0u);
  EXPECT_NE(options & SSL_OP_CIPHER_SERVER_PREFERENCE, 0u);
}

TEST_F(TlsContextTest, GroupReadableKeyIsAccepted) {
  ASSERT_EQ(::chmod(pki_.key.c_str(), 0640), 0);  // Debian's ssl-cert group convention
  EXPECT_EQ(loadError({pki_.cert, pki_.key}), "");
}

TEST_F(TlsContextTest, KeyReadableByOthersIsRefused) {
  ASSERT_EQ(::chmod(pki_.key.c_str(), 0644), 0);
  EXPECT_EQ(loadError({pki_.cert, pki_.key}),
            "http.tls_key " + pki_.key.string() + ": is accessible by others (mode 0644); chmod o-rwx it");
}

TEST_F(TlsContextTest, KeyThatDoesNotMatchTheCertificateIsRefused) {
  EXPECT_EQ(loadError({pki_.cert, pki_.other_key}),
            "http.tls_key " + pki_.other_key.string() + ": does not match the certificate in " + pki_.cert.string());
}

TEST_F(TlsContextTest, MissingFilesNameTheKeyAndTheReason) {
  EXPECT_EQ(loadError({dir_ / "nope.pem", pki_.key}),
            "http.tls_cert " + (dir_ / "nope.pem").string() + ": cannot open: No such file or directory");
  EXPECT_EQ(loadError({pki_.cert, dir_ / "nope.key"}),
            "http.tls_key " + (dir_ / "nope.key").string() + ": cannot open: No such file or directory");
  EXPECT_EQ(loadError({dir_, pki_.key}), "http.tls_cert " + dir_.string() + ": not a regular file");
}

TEST_F(TlsContextTest, FilesThatAreNotPemAreRefused) {
  testpki::writeWithMode(dir_ / "junk.pem", "not a certificate\n", 0644);
  EXPECT_THAT(loadError({dir_ / "junk.pem", pki_.key}),
              HasSubstr("http.tls_cert " + (dir_ / "junk.pem").string() + ": no PEM certificate in it"));
  // Key and certificate swapped: the usual copy-paste mistake.
  EXPECT_THAT(loadError({pki_.key, pki_.key}), HasSubstr("no PEM certificate in it"));
  testpki::writeWithMode(dir_ / "junk.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0600);
  EXPECT_THAT(loadError({pki_.cert, dir_ / "junk.key"}),
              HasSubstr("http.tls_key " + (dir_ / "junk.key").string() + ": no usable PEM private key in it"));
}

TEST_F(TlsContextTest, CorruptSecondCertificateInTheChainIsRefused) {
  std::string chain;
  {
    std::ifstream in(pki_.cert);
    chain.assign(std::istreambuf_iterator<char>(in), {});
  }
  // Cut the CA block in half.
  const auto second = chain.find("-----BEGIN CERTIFICATE-----", 10);
  ASSERT_NE(second, std::string::npos);
  testpki::writeWithMode(dir_ / "cut.pem", chain.substr(0, second + 80), 0644);
  EXPECT_THAT(loadError({dir_ / "cut.pem", pki_.key}), HasSubstr("certificate 2 cannot be read"));
}

TEST_F(TlsContextTest, ErrorsAreOneLine) {
  ASSERT_EQ(::chmod(pki_.key.c_str(), 0604), 0);
  const std::string message = loadError({pki_.cert, pki_.key});
  ASSERT_FALSE(message.empty());
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_THAT(message, HasSubstr("(mode 0604)"));
}

}  // namespace
}  // namespace phonefarm::http
