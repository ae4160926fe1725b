// Unit tests for phonefarmctl's transport (agent/ctl/http_client.hpp) against
// a one-shot loopback server in the test: the request as it goes on the wire
// (request line with the base path, Host, Connection: close, the token
// header, Content-Length only with a body), an answer read over the socket,
// and the transport failures the integration tests cannot stage: an agent
// that never answers (the deadline), one that closes at once, a refused
// connection, plain HTTP on an https URL, and header injection refused.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "agent/ctl/http_client.hpp"
#include "common/os/file_descriptor.hpp"

namespace phonefarm::ctl {
namespace {

using namespace std::chrono_literals;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// Listens on 127.0.0.1:0. answer() serves the next connection on a thread:
// reads the request (head and Content-Length body) unless told not to, writes
// the canned bytes and closes.
class OneShotServer {
 public:
  OneShotServer() : listener_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (!listener_ || ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listener_.get(), 4) != 0 ||
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
  }
  OneShotServer(const OneShotServer&) = delete;
  OneShotServer& operator=(const OneShotServer&) = delete;
  ~OneShotServer() {
    ::shutdown(listener_.get(), SHUT_RDWR);  // ends an accept() nobody connected to
    if (thread_.joinable()) thread_.join();
  }

  std::uint16_t port() const { return port_; }
  Url url(const std::string& scheme = "http", const std::string& base = "") const {
    return Url::parse(scheme + "://127.0.0.1:" + std::to_string(port_) + base);
  }

  void answer(std::string bytes, bool read_request = true) {
    thread_ = std::thread([this, bytes = std::move(bytes), read_request] {
      os::FileDescriptor conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) return;
      if (read_request) request_ = readRequest(conn.get());
      std::string_view rest = bytes;
      while (!rest.empty()) {
        const ssize_t n = ::send(conn.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        rest.remove_prefix(static_cast<std::size_t>(n));
      }
    });
  }

  // What the client sent (after the exchange).
  std::string request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  static std::string readRequest(int fd) {
    std::string in;
    char buf[4096];
    std::size_t want = std::string::npos;
    while (in.size() < want) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<std::size_t>(n));
      const std::size_t head_end = in.find("\r\n\r\n");
      if (want == std::string::npos && head_end != std::string::npos) {
        const std::size_t cl = in.find("Content-Length: ");
        const std::size_t body = cl == std::string::npos || cl > head_end ? 0 : std::stoul(in.substr(cl + 16));
        want = head_end + 4 + body;
      }
    }
    return in;
  }

  os::FileDescriptor listener_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::string request_;
};

std::string transportFailure(const Url& url, std::chrono::milliseconds timeout = 10s) {
  try {
    httpRequest(url, "GET", "/phones", "", {}, timeout);
  } catch (const TransportError& e) {
    return e.what();
  }
  return "answered";
}

TEST(CtlHttpClient, PostGoesOutWithBasePathHostTokenAndBody) {
  OneShotServer server;
  server.answer("HTTP/1.1 201 Created\r\nContent-Length: 11\r\nX-Id: p-1\r\n\r\n{\"ok\":true}");
  const HttpResponse r = httpRequest(server.url("http", "/agent/"), "POST", "/processes?dry=1", "{}",
                                     {{"Authorization", "Bearer tok"}, {"Content-Type", "application/json"}}, 10s);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.header("x-id"), "p-1");
  EXPECT_EQ(r.body, "{\"ok\":true}");
  const std::string req = server.request();
  EXPECT_THAT(req, StartsWith("POST /agent/processes?dry=1 HTTP/1.1\r\n"));
  EXPECT_THAT(req, HasSubstr("\r\nHost: 127.0.0.1:" + std::to_string(server.port()) + "\r\n"));
  EXPECT_THAT(req, HasSubstr("\r\nConnection: close\r\n"));
  EXPECT_THAT(req, HasSubstr("\r\nUser-Agent: phonefarmctl/" PHONEFARM_VERSION "\r\n"));
  EXPECT_THAT(req, HasSubstr("\r\nAccept: application/json\r\n"));
  EXPECT_THAT(req, HasSubstr("\r\nAuthorization: Bearer tok\r\n"));
  EXPECT_THAT(req, HasSubstr("\r\nContent-Length: 2\r\n"));
  EXPECT_THAT(req, EndsWith("\r\n\r\n{}"));
}

TEST(CtlHttpClient, GetWithoutBodyHasNoContentLength) {
  OneShotServer server;
  server.answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]");
  EXPECT_EQ(httpRequest(server.url(), "GET", "/phones", "", {}, 10s).body, "[]");
  const std::string req = server.request();
  EXPECT_THAT(req, StartsWith("GET /phones HTTP/1.1\r\n"));
  EXPECT_THAT(req, Not(HasSubstr("Content-Length")));
}

TEST(CtlHttpClient, EmptyPostStillSaysContentLengthZero) {
  OneShotServer server;
  server.answer("HTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_EQ(httpRequest(server.url(), "POST", "/x", "", {}, 10s).status, 204);
  EXPECT_THAT(server.request(), HasSubstr("\r\nContent-Length: 0\r\n"));
}

TEST(CtlHttpClient, InterimAnswerOnTheWireIsSkipped) {
  OneShotServer server;
  server.answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  const HttpResponse r = httpRequest(server.url(), "GET", "/", "", {}, 10s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
}

TEST(CtlHttpClient, AgentThatClosesAtOnce) {
  OneShotServer server;
  server.answer("");
  EXPECT_EQ(transportFailure(server.url()), "the agent closed the connection without answering");
}

TEST(CtlHttpClient, AgentThatNeverAnswersHitsTheDeadline) {
  OneShotServer server;  // the kernel accepts; nobody reads or writes
  EXPECT_EQ(transportFailure(server.url(), 200ms), "timed out waiting for the response");
  EXPECT_EQ(transportFailure(server.url("https"), 200ms),
            "TLS handshake with 127.0.0.1:" + std::to_string(server.port()) + " timed out");
}

TEST(CtlHttpClient, RefusedConnection) {
  std::uint16_t port = 0;
  {
    OneShotServer gone;
    port = gone.port();
  }
  EXPECT_EQ(transportFailure(Url::parse("http://127.0.0.1:" + std::to_string(port))), "Connection refused");
}

TEST(CtlHttpClient, PlainHttpOnAnHttpsUrlSaysSo) {
  OneShotServer server;
  server.answer("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", /*read_request=*/false);
  EXPECT_EQ(transportFailure(server.url("https")),
            "TLS handshake with 127.0.0.1:" + std::to_string(server.port()) +
                " failed: wrong version number (the agent does not speak TLS on this port; try http://)");
}

TEST(CtlHttpClient, HeaderInjectionAndBadMethodsAreRefusedBeforeConnecting) {
  const Url url = Url::parse("http://127.0.0.1:1");
  EXPECT_THROW(httpRequest(url, "GET", "/", "", {{"X-A", "1\r\nX-B: 2"}}, 1s), std::invalid_argument);
  EXPECT_THROW(httpRequest(url, "GET", "/", "", {{"Bad Name", "1"}}, 1s), std::invalid_argument);
  EXPECT_THROW(httpRequest(url, "GET", "/", "", {{"", "1"}}, 1s), std::invalid_argument);
  EXPECT_THROW(httpRequest(url, "G ET", "/", "", {}, 1s), std::invalid_argument);
  EXPECT_THROW(httpRequest(url, "FETCH", "/", "", {}, 1s), std::invalid_argument);
  EXPECT_THROW(httpRequest(url, "GET", "/a b", "", {}, 1s), std::invalid_argument);
  EXPECT_THROW(httpRequest(url, "GET", "/a\r\nX: y", "", {}, 1s), std::invalid_argument);
}

}  // namespace
}  // namespace phonefarm::ctl
