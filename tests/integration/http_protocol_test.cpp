// HTTP/1.1 protocol cases against the real daemon, sent byte for byte over a
// raw socket: one table, so the list of what the agent accepts and refuses
// reads at a glance. Covers request smuggling through Transfer-Encoding (RFC
// 9112 §6.1, §6.3), Host (§3.2), absolute-form targets (§3.2.2), leading
// empty lines (§2.2), HEAD (RFC 9110 §9.1), Date (§6.6.1), 100-continue
// (only to HTTP/1.1, only after auth and routing) and percent-encoded paths.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>

#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;

// A process the smuggled requests try to cancel; it stays pending (the
// default fixture runs no work), so a cancel that got through shows.
constexpr const char* kVictim = "p:victim-1";

struct RawResponse {
  Response response;    // status, lower-cased headers, body
  std::string head;     // the status line and fields as sent
  bool closed = false;  // the server closed the connection after it
};

// Reads one response (Content-Length framed; no body for HEAD) and then
// whether the server closes the connection within `close_wait`.
std::optional<RawResponse> readResponse(RawConnection& conn, std::string& buffer, bool head_request,
                                        std::chrono::milliseconds close_wait) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto remaining = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  };
  std::size_t end = std::string::npos;
  while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
    if (remaining() <= 0ms || conn.recvSome(buffer, remaining()) != RawConnection::Recv::kData) return std::nullopt;
  }
  RawResponse r;
  r.head = buffer.substr(0, end);
  buffer.erase(0, end + 4);
  auto parsed = parseResponseHead(r.head);
  if (!parsed) return std::nullopt;
  r.response = std::move(*parsed);
  const std::string length_field = r.response.header("content-length");
  const std::size_t length = head_request || length_field.empty() ? 0 : std::stoul(length_field);
  while (buffer.size() < length) {
    if (remaining() <= 0ms || conn.recvSome(buffer, remaining()) != RawConnection::Recv::kData) return std::nullopt;
  }
  r.response.body = buffer.substr(0, length);
  buffer.erase(0, length);
  r.closed = conn.waitClosed(close_wait);
  return r;
}

std::string cancelRequest(const std::string& id) {
  const std::string body = R"({"reason":"smuggled","strategy":"hard","requested_by":{"system":"attacker"}})";
  return "POST /processes/" + id + "/cancel HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + kOperateToken +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A submit whose body is really a second request: the cancel of kVictim.
std::string smuggle(const std::string& framing_headers) {
  return "POST /processes HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + std::string(kScheduleToken) +
         "\r\nContent-Type: application/json\r\n" + framing_headers + "\r\n" + cancelRequest(kVictim);
}

struct Case {
  const char* name;
  std::string request;
  int status;
  bool closes;
  bool head_request = false;
};

class HttpProtocolTest : public AgentFixture {
 protected:
  void SetUp() override {
    AgentFixture::SetUp();
    if (HasFatalFailure()) return;
    submit(kVictim);
  }

  std::string victimStatus() {
    auto r = call("GET", "/processes/p:victim-1", "", kReadToken);
    EXPECT_EQ(r.status, 200) << r.body;
    return std::string(r.json().as_object().at("status").as_string());
  }

  void runCase(const Case& c) {
    SCOPED_TRACE(c.name);
    RawConnection conn("127.0.0.1", port_);
    conn.sendAll(c.request);
    std::string buffer;
    // A kept-alive connection is not closed within this time.
    auto r = readResponse(conn, buffer, c.head_request, c.closes ? 5000ms : 300ms);
    ASSERT_TRUE(r.has_value()) << "no complete response";
    EXPECT_EQ(r->response.status, c.status) << r->head << r->response.body;
    EXPECT_EQ(r->closed, c.closes) << r->head;
    EXPECT_FALSE(r->response.header("date").empty()) << "no Date header: " << r->head;
    if (c.closes) {
      EXPECT_TRUE(buffer.empty()) << "a second response followed: " << buffer;
    }
  }
};

TEST_F(HttpProtocolTest, ProtocolCases) {
  const std::string health = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string get_victim_encoded = std::string("GET /processes/p%3Avictim-1 HTTP/1.1\r\nHost: a\r\n") +
                                         "Authorization: Bearer " + kReadToken + "\r\n\r\n";
  const std::string read_auth = std::string("Authorization: Bearer ") + kReadToken + "\r\n";
  const std::vector<Case> cases = {
      // Transfer-Encoding: only "chunked" alone; everything else refused and closed.
      {"TE gzip without length", smuggle("Transfer-Encoding: gzip\r\n"), 501, true},
      {"TE identity without length", smuggle("Transfer-Encoding: identity\r\n"), 501, true},
      {"TE chunked, gzip", smuggle("Transfer-Encoding: chunked, gzip\r\n"), 400, true},
      {"TE gzip, chunked", smuggle("Transfer-Encoding: gzip, chunked\r\n"), 501, true},
      {"TE on two lines", smuggle("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), 501, true},
      {"TE identity with length", smuggle("Transfer-Encoding: identity\r\nContent-Length: 2\r\n"), 400, true},
      {"TE gzip with length", smuggle("Transfer-Encoding: gzip\r\nContent-Length: 2\r\n"), 400, true},
      {"TE chunked with length", smuggle("Transfer-Encoding: chunked\r\nContent-Length: 2\r\n"), 400, true},
      {"TE chunked accepted",
       "POST /processes HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + std::string(kScheduleToken) +
           "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
       422, false},
      // Host.
      {"HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\n\r\n", 400, true},
      {"two Host lines", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, true},
      {"invalid Host", "GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", 400, true},
      {"HTTP/1.0 without Host", "GET /healthz HTTP/1.0\r\n\r\n", 200, true},
      // Targets.
      {"absolute-form", "GET http://127.0.0.1:8787/healthz HTTP/1.1\r\nHost: 127.0.0.1:8787\r\n\r\n", 200, false},
      {"leading empty lines", "\r\n\r\n" + health, 200, false},
      {"encoded id", get_victim_encoded, 200, false},
      {"encoded id lower-case", "GET /processes/p%3avictim-1 HTTP/1.1\r\nHost: a\r\n" + read_auth + "\r\n", 200, false},
      {"encoded route", "GET /%68ealthz HTTP/1.1\r\nHost: a\r\n\r\n", 200, false},
      {"encoded slash", "GET /processes/p%2Fvictim HTTP/1.1\r\nHost: a\r\n" + read_auth + "\r\n", 404, false},
      {"broken escape", "GET /processes/p%zz HTTP/1.1\r\nHost: a\r\n" + read_auth + "\r\n", 400, false},
      {"encoded NUL", "GET /processes/p%00 HTTP/1.1\r\nHost: a\r\n" + read_auth + "\r\n", 400, false},
      // HEAD wherever GET is served.
      {"HEAD /healthz", "HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 200, false, true},
      {"HEAD a process", "HEAD /processes/p:victim-1 HTTP/1.1\r\nHost: a\r\n" + read_auth + "\r\n", 200, false, true},
      {"HEAD a POST-only route", "HEAD /cancel HTTP/1.1\r\nHost: a\r\n\r\n", 405, false, true},
      // 100-continue only after auth and routing.
      {"expect with a bad token",
       "POST /processes HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\n"
       "Content-Length: 10\r\nExpect: 100-continue\r\n\r\n",
       401, true},
      {"expect on an unknown route",
       "POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n", 404, true},
  };
  for (const auto& c : cases) runCase(c);
  // Nothing smuggled ran: the victim was never cancelled.
  EXPECT_EQ(victimStatus(), "queued");
  auto audit = call("GET", "/processes/p:victim-1", "", kReadToken);
  EXPECT_EQ(audit.body.find("smuggled"), std::string::npos) << audit.body;
}

TEST_F(HttpProtocolTest, HeadAnswersLikeGetWithoutTheBody) {
  RawConnection conn("127.0.0.1", port_);
  std::string buffer;
  conn.sendAll("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
  auto get = readResponse(conn, buffer, false, 0ms);
  ASSERT_TRUE(get.has_value());
  conn.sendAll("HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
  auto head = readResponse(conn, buffer, true, 300ms);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->response.status, 200);
  EXPECT_FALSE(get->response.body.empty());
  EXPECT_EQ(head->response.header("content-length"), std::to_string(get->response.body.size()));
  EXPECT_EQ(head->response.header("content-type"), get->response.header("content-type"));
  EXPECT_TRUE(buffer.empty()) << "HEAD sent a body: " << buffer;
}

TEST_F(HttpProtocolTest, Allow405ListsHead) {
  auto r = call("DELETE", "/healthz");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
}

TEST_F(HttpProtocolTest, NoContinueToHttp10) {
  RawConnection conn("127.0.0.1", port_);
  const std::string body = "{}";
  conn.sendAll("POST /processes HTTP/1.0\r\nAuthorization: Bearer " + std::string(kScheduleToken) +
               "\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  std::string early;
  // The server must wait for the body silently: no interim response at all.
  EXPECT_EQ(conn.recvSome(early, 500ms), RawConnection::Recv::kTimeout) << early;
  conn.sendAll(body);
  std::string buffer = early;
  auto r = readResponse(conn, buffer, false, 5000ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->response.status, 422) << r->head;
  EXPECT_EQ(r->head.find("100 Continue"), std::string::npos);
}

TEST_F(HttpProtocolTest, ContinueToAnAuthorisedHttp11Request) {
  RawConnection conn("127.0.0.1", port_);
  conn.sendAll("POST /processes HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + std::string(kScheduleToken) +
               "\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  std::string buffer;
  auto interim = readResponse(conn, buffer, true, 0ms);
  ASSERT_TRUE(interim.has_value());
  EXPECT_EQ(interim->response.status, 100);
  conn.sendAll("{}");
  auto r = readResponse(conn, buffer, false, 300ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->response.status, 422);
}

TEST_F(HttpProtocolTest, EncodedIdsRoundTripThroughCancel) {
  auto r = call("POST", "/processes/p%3Avictim-1/cancel", cancelBody("hard"), kOperateToken);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(victimStatus(), "cancelled");
}

}  // namespace
}  // namespace phonefarm::testing
