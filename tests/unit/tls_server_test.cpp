// HttpServer with [http] tls_cert/tls_key, over real loopback sockets: the
// same session code as plain HTTP behind a TLS handshake. The server runs
// in-process on its own thread; TlsTestClient (blocking OpenSSL with socket
// timeouts) and TestSocket (raw bytes) are the clients. Every wait has a
// deadline; nothing sleeps to wait for state.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/http/http_server.hpp"
#include "tests/support/test_socket.hpp"
#include "tests/support/tls_test_client.hpp"
#include "tests/support/tls_test_pki.hpp"
#include "tests/unit/running_server.hpp"

namespace phonefarm::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::RunningServer;
using testing::TestSocket;
using testtls::ClientOptions;
using testtls::TlsTestClient;

RequestHandler echoHandler() {
  return [](HttpRequest req, Responder respond) {
    HttpResponse res;
    res.status = 200;
    res.body = R"({"target":")" + req.target + R"(","body_len":)" + std::to_string(req.body.size()) + "}";
    respond(std::move(res));
  };
}

class HttpServerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pf-tls-server-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    pki_ = testpki::writePki(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  HttpServerOptions options() const {
    HttpServerOptions o = test::testServerOptions();
    o.tls = TlsFiles{pki_.cert, pki_.key};
    return o;
  }

  ClientOptions trusting() const {
    ClientOptions c;
    c.ca_file = pki_.ca.string();
    c.verify_host = "localhost";
    return c;
  }

  std::filesystem::path dir_;
  testpki::Files pki_;
};

TEST_F(HttpServerTlsTest, ServesKeepAliveRequestsOverOneVerifiedConnection) {
  RunningServer srv(options(), echoHandler());
  TlsTestClient client(srv.port(), trusting());
  ASSERT_TRUE(client.connected()) << client.error();
  EXPECT_EQ(SSL_get_verify_result(client.ssl()), X509_V_OK);
  EXPECT_FALSE(client.compressed());
  for (const char* target : {"/healthz", "/processes?limit=1"}) {
    auto res = client.get(target);
    ASSERT_TRUE(res) << target;
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, std::string(R"({"target":")") + target + R"(","body_len":0})");
    EXPECT_EQ(res->header("connection"), "");  // kept alive
  }
  EXPECT_EQ(srv.server().stats().accepted, 1u);
  EXPECT_EQ(srv.server().stats().requests, 2u);
}

TEST_F(HttpServerTlsTest, Tls12ClientGetsAForwardSecretAeadSuite) {
  RunningServer srv(options(), echoHandler());
  ClientOptions c = trusting();
  c.max_version = TLS1_2_VERSION;
  TlsTestClient client(srv.port(), c);
  ASSERT_TRUE(client.connected()) << client.error();
  EXPECT_EQ(client.protocol(), "TLSv1.2");
  EXPECT_EQ(client.cipher().rfind("ECDHE-", 0), 0u) << client.cipher();
  auto res = client.get("/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(HttpServerTlsTest, Tls11ClientIsRefusedWithAProtocolVersionAlert) {
  RunningServer srv(options(), echoHandler());
  ClientOptions old = trusting();
  old.allow_legacy = true;  // otherwise OpenSSL 3 would not even offer TLS 1.1
  old.min_version = TLS1_1_VERSION;
  old.max_version = TLS1_1_VERSION;
  TlsTestClient client(srv.port(), old);
  EXPECT_FALSE(client.connected());
  // The server's alert, not a local refusal to offer TLS 1.1.
  EXPECT_EQ(client.error(), "tlsv1 alert protocol version");
  EXPECT_TRUE(srv.waitStats([](const HttpServerStats& s) { return s.tls_handshake_failures == 1; }));
  EXPECT_TRUE(srv.waitStats([](const HttpServerStats& s) { return s.active_connections == 0; }));

  // The same legacy-capable client allowed TLS 1.2 gets in.
  old.max_version = 0;
  TlsTestClient modern(srv.port(), old);
  ASSERT_TRUE(modern.connected()) << modern.error();
}

TEST_F(HttpServerTlsTest, PlainHttpToTheTlsPortIsDroppedFastAndServingGoesOn) {
  HttpServerOptions o = options();
  o.first_request_timeout = 10s;  // "fast" must not mean "at the handshake timeout"
  RunningServer srv(o, echoHandler());
  auto plain = TestSocket::connectTo(srv.port());
  const auto start = Clock::now();
  ASSERT_TRUE(plain.sendAll("GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"));
  EXPECT_TRUE(plain.waitClosed(3s));
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_TRUE(srv.waitStats([](const HttpServerStats& s) { return s.tls_handshake_failures == 1; }));
  EXPECT_EQ(srv.server().stats().requests, 0u);

  TlsTestClient client(srv.port(), trusting());
  ASSERT_TRUE(client.connected()) << client.error();
  auto res = client.get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(HttpServerTlsTest, SilentClientIsCutAtTheFirstRequestTimeout) {
  HttpServerOptions o = options();
  o.first_request_timeout = 300ms;
  o.header_timeout = 10s;
  RunningServer srv(o, echoHandler());
  auto silent = TestSocket::connectTo(srv.port());
  const auto start = Clock::now();
  EXPECT_TRUE(silent.waitClosed(5s));
  const auto took = Clock::now() - start;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 4s);
  EXPECT_TRUE(srv.waitStats([](const HttpServerStats& s) { return s.active_connections == 0; }));
  EXPECT_EQ(srv.server().stats().tls_handshake_failures, 1u);
}

// A connection that has not finished its handshake has no request in flight:
// at the cap it makes room for a client that completes one.
TEST_F(HttpServerTlsTest, ConnectionsStuckInTheHandshakeMakeRoomAtTheCap) {
  HttpServerOptions o = options();
  o.max_connections = 2;
  o.first_request_timeout = 10s;
  RunningServer srv(o, echoHandler());
  auto a = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(srv.waitStats([](const HttpServerStats& s) { return s.accepted == 1; }));
  auto b = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(srv.waitStats([](const HttpServerStats& s) { return s.accepted == 2; }));
  TlsTestClient client(srv.port(), trusting());
  ASSERT_TRUE(client.connected()) << client.error();
  auto res = client.get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(a.waitClosed(3s));  // the one idle longest
  EXPECT_FALSE(b.waitClosed(100ms));
  EXPECT_EQ(srv.server().stats().evicted_idle, 1u);
  EXPECT_EQ(srv.server().stats().rejected_over_cap, 0u);
}

TEST_F(HttpServerTlsTest, BodyLimitAndPostWorkAsOverPlainHttp) {
  RunningServer srv(options(), echoHandler());
  TlsTestClient client(srv.port(), trusting());
  ASSERT_TRUE(client.connected()) << client.error();
  const std::string body = R"({"a":1})";
  ASSERT_TRUE(client.send("POST /p HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body));
  auto ok = client.readResponse();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body, R"({"target":"/p","body_len":7})");
  ASSERT_TRUE(client.send("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"));
  auto big = client.readResponse();
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(big->header("connection"), "close");
  EXPECT_TRUE(client.waitClosed());
}

TEST_F(HttpServerTlsTest, NonKeepAliveResponseEndsWithCloseNotify) {
  RunningServer srv(options(), echoHandler());
  TlsTestClient client(srv.port(), trusting());
  ASSERT_TRUE(client.connected()) << client.error();
  auto res = client.get("/bye", "Connection: close\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(client.waitClosed());
  EXPECT_NE(SSL_get_shutdown(client.ssl()) & SSL_RECEIVED_SHUTDOWN, 0);
  EXPECT_TRUE(srv.waitStats([](const HttpServerStats& s) { return s.active_connections == 0; }));
}

TEST_F(HttpServerTlsTest, GracefulStopFinishesTheRequestInFlight) {
  std::mutex mutex;
  std::vector<Responder> parked;
  std::promise<void> arrived;
  RunningServer srv(options(), [&](HttpRequest, Responder respond) {
    std::lock_guard lock(mutex);
    parked.push_back(std::move(respond));
    arrived.set_value();
  });
  TlsTestClient client(srv.port(), trusting());
  ASSERT_TRUE(client.connected()) << client.error();
  ASSERT_TRUE(client.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_EQ(arrived.get_future().wait_for(5s), std::future_status::ready);
  srv.server().beginShutdown();
  {
    std::lock_guard lock(mutex);
    HttpResponse r;
    r.status = 200;
    r.body = "{}";
    parked.front()(std::move(r));
  }
  auto res = client.readResponse();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->header("connection"), "close");
  EXPECT_TRUE(srv.waitStopped(5s));
}

TEST_F(HttpServerTlsTest, ReloadSwapsThePairAndABadPairKeepsTheOneInForce) {
  RunningServer srv(options(), echoHandler());
  // A new PKI written over the configured paths.
  const auto next = testpki::writePki(dir_, "next-", "IP:127.0.0.1,DNS:localhost", "phonefarm-next");
  std::filesystem::copy_file(next.cert, pki_.cert, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(next.key, pki_.key, std::filesystem::copy_options::overwrite_existing);
  EXPECT_TRUE(srv.onLoop([&] { return srv.server().reloadTls(); }));

  ClientOptions trusts_next = trusting();
  trusts_next.ca_file = next.ca.string();
  {
    TlsTestClient client(srv.port(), trusts_next);
    ASSERT_TRUE(client.connected()) << client.error();
    TlsTestClient old_trust(srv.port(), trusting());
    EXPECT_FALSE(old_trust.connected());
    EXPECT_EQ(old_trust.error(), "certificate verify failed");
  }

  // A key that does not match: refused, the pair in force stays.
  std::filesystem::copy_file(next.other_key, pki_.key, std::filesystem::copy_options::overwrite_existing);
  EXPECT_FALSE(srv.onLoop([&] { return srv.server().reloadTls(); }));
  TlsTestClient after(srv.port(), trusts_next);
  ASSERT_TRUE(after.connected()) << after.error();
  auto res = after.get("/still");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(HttpServerTlsTest, StartRefusesAKeyReadableByOthers) {
  ASSERT_EQ(::chmod(pki_.key.c_str(), 0644), 0);
  os::AsioEventLoop loop;
  HttpServer server(loop, options(), echoHandler());
  try {
    server.start();
    FAIL() << "start() accepted a world-readable key";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "http.tls_key " + pki_.key.string() + ": is accessible by others (mode 0644); chmod o-rwx it");
  }
}

TEST_F(HttpServerTlsTest, PlainServerIgnoresReload) {
  HttpServerOptions o = options();
  o.tls.reset();
  RunningServer srv(o, echoHandler());
  EXPECT_TRUE(srv.onLoop([&] { return srv.server().reloadTls(); }));
  auto plain = TestSocket::connectTo(srv.port());
  auto res = plain.roundtrip("GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

}  // namespace
}  // namespace phonefarm::http
