// The real agent with [http] tls_cert/tls_key, driven by curl (an independent
// TLS client) and by raw sockets: /healthz and an authenticated request over
// HTTPS, certificate verification failing without the test CA, plain HTTP to
// the TLS port refused while the agent keeps serving, check-config and
// start-up naming bad key files, and SIGHUP swapping the certificate (a bad
// new pair keeps the old one). The PKI is generated per test.
#include <csignal>

#include "tests/integration/agent_fixture.hpp"
#include "tests/support/run_command.hpp"
#include "tests/support/tls_test_pki.hpp"

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;

class TlsAgent : public AgentFixture {
 protected:
  std::string extraConfig() const override {
    return "[http]\nheader_timeout_seconds = 5\ntls_cert = \"" + pki_.cert.string() + "\"\ntls_key = \"" +
           pki_.key.string() + "\"\n";
  }

  std::string url(const std::string& path) const { return "https://127.0.0.1:" + std::to_string(port_) + path; }

  // curl's body and status ("<body>\n<status>"), and its exit code.
  CommandResult curl(const std::string& path, const std::string& ca, const char* token = nullptr) const {
    std::vector<std::string> argv{"curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"};
    if (!ca.empty()) argv.insert(argv.end(), {"--cacert", ca});
    if (token != nullptr) argv.insert(argv.end(), {"-H", std::string("Authorization: Bearer ") + token});
    argv.push_back(url(path));
    return runCommand(argv, {}, 20s);
  }

  CommandResult checkConfig(const std::filesystem::path& config) const {
    return runCommand({PHONEFARM_AGENT_BINARY, "check-config", "--config", config.string()}, {}, 20s);
  }

  // A copy of the agent's config with other key/cert paths.
  std::filesystem::path configWith(const std::string& name, const std::filesystem::path& cert,
                                   const std::filesystem::path& key) const {
    const auto path = dir_.path() / name;
    writeFile(path,
              "listen = \"127.0.0.1:0\"\nstate_dir = \"" + (dir_.path() / (name + "-state")).string() +
                  "\"\ntokens_file = \"" + (dir_.path() / "tokens").string() + "\"\n[http]\ntls_cert = \"" +
                  cert.string() + "\"\ntls_key = \"" + key.string() + "\"\n" + workConfig() + adbConfig() +
                  phonesConfig(),
              0600);
    return path;
  }

  TempDir pki_dir_;
  testpki::Files pki_ = testpki::writePki(pki_dir_.path());
};

TEST_F(TlsAgent, AnswersHealthzAndAuthenticatedRequestsOverHttps) {
  ASSERT_TRUE(agent_->findLine("tls=on")) << agent_->output();
  auto health = curl("/healthz", pki_.ca.string());
  ASSERT_EQ(health.exit_code, 0) << health.output;
  EXPECT_EQ(health.output, "{\"status\":\"ok\"}\n200");

  auto list = curl("/processes", pki_.ca.string(), kReadToken);
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find("\"processes\""), std::string::npos) << list.output;
  EXPECT_EQ(list.output.substr(list.output.size() - 3), "200");

  auto unauthenticated = curl("/processes", pki_.ca.string());
  EXPECT_EQ(unauthenticated.output.substr(unauthenticated.output.size() - 3), "401");
}

TEST_F(TlsAgent, ClientsWithoutTheCaAreRefusedByVerification) {
  auto r = curl("/healthz", "");
  EXPECT_EQ(r.exit_code, 60) << r.output;  // curl: peer certificate cannot be authenticated
  EXPECT_NE(r.output.find("certificate"), std::string::npos) << r.output;
}

TEST_F(TlsAgent, PlainHttpToTheTlsPortFailsFastAndTheAgentKeepsServing) {
  RawConnection plain("127.0.0.1", port_);
  const auto start = std::chrono::steady_clock::now();
  plain.sendAll("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(plain.waitClosed(3s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);  // header timeout is 5 s
  auto health = curl("/healthz", pki_.ca.string());
  EXPECT_EQ(health.exit_code, 0) << health.output;
}

TEST_F(TlsAgent, CheckConfigLoadsTheCertificateAndNamesBadKeys) {
  auto ok = checkConfig(configPath());
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("TLS certificate CN=phonefarm-test"), std::string::npos) << ok.output;

  auto mismatch = checkConfig(configWith("mismatch.toml", pki_.cert, pki_.other_key));
  EXPECT_EQ(mismatch.exit_code, 1);
  EXPECT_NE(mismatch.output.find("http.tls_key " + pki_.other_key.string() + ": does not match the certificate"),
            std::string::npos)
      << mismatch.output;

  const auto open_key = pki_dir_.path() / "open.key";
  std::filesystem::copy_file(pki_.key, open_key);
  std::filesystem::permissions(open_key, std::filesystem::perms(0644), std::filesystem::perm_options::replace);
  auto world = checkConfig(configWith("world.toml", pki_.cert, open_key));
  EXPECT_EQ(world.exit_code, 1);
  EXPECT_NE(world.output.find("http.tls_key " + open_key.string() + ": is accessible by others (mode 0644)"),
            std::string::npos)
      << world.output;
}

TEST_F(TlsAgent, AgentRefusesToStartWithAKeyThatDoesNotMatch) {
  const auto config = configWith("bad.toml", pki_.cert, pki_.other_key);
  auto r = runCommand({PHONEFARM_AGENT_BINARY, "--config", config.string()}, {}, 20s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("phonefarm-agent: http.tls_key " + pki_.other_key.string() + ": does not match"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("http.listening"), std::string::npos) << r.output;
}

TEST_F(TlsAgent, SighupSwapsTheCertificateAndABadPairKeepsTheOld) {
  const auto next = testpki::writePki(pki_dir_.path(), "next-", "IP:127.0.0.1,DNS:localhost", "phonefarm-next");
  std::filesystem::copy_file(next.cert, pki_.cert, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(next.key, pki_.key, std::filesystem::copy_options::overwrite_existing);
  agent_->kill(SIGHUP);
  ASSERT_TRUE(agent_->waitForLine("http.tls.reloaded", 10s)) << agent_->output();
  EXPECT_NE(agent_->findLine("http.tls.reloaded")->find("CN=phonefarm-next"), std::string::npos);
  EXPECT_EQ(curl("/healthz", next.ca.string()).exit_code, 0);
  EXPECT_EQ(curl("/healthz", pki_.ca.string()).exit_code, 60);

  std::filesystem::copy_file(next.other_key, pki_.key, std::filesystem::copy_options::overwrite_existing);
  agent_->kill(SIGHUP);
  ASSERT_TRUE(agent_->waitForLine("http.tls.reload_failed", 10s)) << agent_->output();
  EXPECT_NE(agent_->findLine("http.tls.reload_failed")->find("does not match the certificate"), std::string::npos);
  auto still = curl("/healthz", next.ca.string());
  EXPECT_EQ(still.exit_code, 0) << still.output;
  EXPECT_EQ(still.output, "{\"status\":\"ok\"}\n200");
}

}  // namespace
}  // namespace phonefarm::testing
