// phonefarmctl over https against the real agent with TLS: the certificate is
// verified against --cacert (or the system store, which does not know the
// test CA), the URL's host name or IP address must be in the certificate, and
// every TLS failure is a transport error: exit code 3 with the reason.
#include <csignal>

#include "tests/integration/agent_fixture.hpp"
#include "tests/support/run_command.hpp"
#include "tests/support/tls_test_pki.hpp"

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;

// The agent's certificate names only what san() says.
class CtlTls : public AgentFixture {
 protected:
  virtual std::string san() const = 0;

  void SetUp() override {
    pki_ = testpki::writePki(pki_dir_.path(), "", san());
    writeFile(dir_.path() / "ctl-token", std::string(kReadToken) + "\n", 0600);
    AgentFixture::SetUp();
  }

  std::string extraConfig() const override {
    return "[http]\ntls_cert = \"" + pki_.cert.string() + "\"\ntls_key = \"" + pki_.key.string() + "\"\n";
  }

  std::string url(const std::string& host) const { return "https://" + host + ":" + std::to_string(port_); }

  CommandResult ctl(const std::string& url, const std::vector<std::string>& args) const {
    std::vector<std::string> argv{
        PHONEFARMCTL_BINARY, "--url", url, "--token-file", (dir_.path() / "ctl-token").string(), "--timeout", "10"};
    argv.insert(argv.end(), args.begin(), args.end());
    return runCommand(argv, {}, 30s);
  }

  std::vector<std::string> trusting(std::vector<std::string> args) const {
    args.insert(args.begin(), {"--cacert", pki_.ca.string()});
    return args;
  }

  // The fixture's config without TLS, on its own state dir.
  std::filesystem::path plainConfig() const {
    const auto path = dir_.path() / "plain.toml";
    writeFile(path,
              "listen = \"127.0.0.1:0\"\nstate_dir = \"" + (dir_.path() / "plain-state").string() +
                  "\"\ntokens_file = \"" + (dir_.path() / "tokens").string() + "\"\n" + workConfig() + adbConfig() +
                  phonesConfig(),
              0600);
    return path;
  }

  TempDir pki_dir_;
  testpki::Files pki_;
};

class CtlTlsByName : public CtlTls {
 protected:
  std::string san() const override { return "DNS:localhost"; }
};

class CtlTlsByIp : public CtlTls {
 protected:
  std::string san() const override { return "IP:127.0.0.1"; }
};

TEST_F(CtlTlsByName, WorksWithCacertAndTheNameInTheCertificate) {
  auto r = ctl(url("localhost"), trusting({"phones"}));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("phone_01"), std::string::npos) << r.output;
  auto json = ctl(url("localhost"), trusting({"--json", "processes"}));
  EXPECT_EQ(json.exit_code, 0) << json.output;
  EXPECT_NE(json.output.find("\"processes\""), std::string::npos) << json.output;
}

TEST_F(CtlTlsByName, SelfSignedChainWithoutCacertFailsVerificationWithExit3) {
  auto r = ctl(url("localhost"), {"phones"});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("TLS handshake with localhost:" + std::to_string(port_) +
                          " failed: certificate verify failed (self-signed certificate in certificate chain)"),
            std::string::npos)
      << r.output;
}

TEST_F(CtlTlsByName, IpAddressNotInTheCertificateFails) {
  auto r = ctl(url("127.0.0.1"), trusting({"phones"}));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("certificate verify failed (IP address mismatch)"), std::string::npos) << r.output;
}

TEST_F(CtlTlsByName, PlainHttpToTheTlsPortIsATransportError) {
  const auto start = std::chrono::steady_clock::now();
  auto r = ctl("http://127.0.0.1:" + std::to_string(port_), {"phones"});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);  // not the 10 s client timeout
}

TEST_F(CtlTlsByName, HttpsToAPlainAgentSaysSo) {
  // A plain listener: the fake adbd is no HTTP server, so use a second agent.
  AgentProcess plain(PHONEFARM_AGENT_BINARY, {"--config", plainConfig().string()}, dir_.path());
  const auto plain_port = plain.waitForListening(20s);
  auto r = ctl("https://127.0.0.1:" + std::to_string(plain_port), trusting({"phones"}));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("the agent does not speak TLS on this port; try http://"), std::string::npos) << r.output;
  EXPECT_EQ(plain.stop(SIGTERM, 10s), 0);
}

TEST_F(CtlTlsByName, UnreadableCacertIsAUsageError) {
  auto r = ctl(url("localhost"), {"--cacert", (dir_.path() / "no-such-ca.pem").string(), "phones"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("no-such-ca.pem"), std::string::npos) << r.output;
}

TEST_F(CtlTlsByIp, WorksWithTheIpAddressInTheCertificate) {
  auto r = ctl(url("127.0.0.1"), trusting({"phones"}));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(CtlTlsByIp, HostNameNotInTheCertificateFails) {
  auto r = ctl(url("localhost"), trusting({"phones"}));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("certificate verify failed (hostname mismatch)"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace phonefarm::testing
