// Unit tests for how phonefarmctl reads the agent's answers
// (agent/ctl/http_response.hpp, log_chunk.hpp): status, reason and headers
// as the commands see them, the body framings, the limits, every way an
// answer can be unusable (each a TransportError, exit 3 in the CLI), and the
// three headers that page through an item's log.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "agent/ctl/http_response.hpp"
#include "agent/ctl/log_chunk.hpp"

namespace phonefarm::ctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

std::string failure(std::string_view wire, bool head_request = false, const HttpLimits& limits = {}) {
  try {
    parseResponse(wire, head_request, limits);
  } catch (const TransportError& e) {
    return e.what();
  }
  return "parsed";
}

TEST(CtlResponse, StatusReasonHeadersAndBody) {
  const HttpResponse r = parseResponse(
      "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nX-Phonefarm-More:  true \r\n"
      "Content-Length: 20\r\n\r\n{\"detail\":\"missing\"}");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.reason, "Not Found");
  EXPECT_THAT(r.headers, ElementsAre(Pair("content-type", "application/json"), Pair("x-phonefarm-more", "true"),
                                     Pair("content-length", "20")));
  EXPECT_EQ(r.body, "{\"detail\":\"missing\"}");
}

TEST(CtlResponse, HeaderLooksUpLowercaseNamesFirstOneWins) {
  const HttpResponse r = parseResponse("HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(r.header("x-a"), "1");
  EXPECT_EQ(r.header("x-b"), "");
}

TEST(CtlResponse, EmptyReasonBecomesTheStandardOne) {
  const HttpResponse r = parseResponse("HTTP/1.1 204 \r\n\r\n");
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.reason, "No Content");
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(parseResponse("HTTP/1.1 422 Bad Things\r\nContent-Length: 0\r\n\r\n").reason, "Bad Things");
}

TEST(CtlResponse, BodyEndsAtContentLengthAndLaterBytesAreIgnored) {
  EXPECT_EQ(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").body, "abc");
}

TEST(CtlResponse, BodyWithoutLengthEndsAtTheClose) {
  EXPECT_EQ(parseResponse("HTTP/1.0 200 OK\r\n\r\nuntil the end").body, "until the end");
}

TEST(CtlResponse, ChunkedBodyIsDecoded) {
  const HttpResponse r =
      parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nlog \r\n5\r\nlines\r\n0\r\n\r\n");
  EXPECT_EQ(r.body, "log lines");
}

TEST(CtlResponse, BinaryBodyIsKeptAsIs) {
  const std::string body("two\0bytes\n", 10);
  EXPECT_EQ(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + body).body, body);
}

TEST(CtlResponse, InterimAnswersAreSkipped) {
  const HttpResponse r = parseResponse(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX-Step: 1\r\n\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.header("x-step"), "");
  EXPECT_EQ(r.body, "{}");
}

TEST(CtlResponse, AnswerToHeadHasNoBody) {
  const HttpResponse r = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
  EXPECT_EQ(r.header("content-length"), "5");
  EXPECT_EQ(r.body, "");
  EXPECT_THAT(failure("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), HasSubstr("in the middle of its response"));
}

TEST(CtlResponse, CloseBeforeOrDuringTheAnswer) {
  EXPECT_EQ(failure(""), "the agent closed the connection without answering");
  EXPECT_EQ(failure("HTTP/1.1 200 OK\r\nContent-Le"), "the agent closed the connection in the middle of its response");
  EXPECT_EQ(failure("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
            "the agent closed the connection in the middle of its response");
  EXPECT_EQ(failure("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nlog "),
            "the agent closed the connection in the middle of its response");
}

TEST(CtlResponse, NotHttp) {
  EXPECT_EQ(failure("SSH-2.0-OpenSSH_9.2\r\n\r\n"), "the agent's answer is not an HTTP/1.x response");
  EXPECT_EQ(failure("HTTP/2 200\r\n\r\n"), "the agent's answer is not an HTTP/1.x response");
  EXPECT_EQ(failure("HTTP/1.1 2x0 OK\r\n\r\n"), "bad HTTP status code in the agent's answer");
  EXPECT_EQ(failure("HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n"), "bad HTTP status code in the agent's answer");
  EXPECT_EQ(failure("HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n"), "bad HTTP status code in the agent's answer");
  EXPECT_THAT(failure("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"), HasSubstr("not valid HTTP"));
  EXPECT_THAT(failure("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
              HasSubstr("not valid HTTP"));
  EXPECT_THAT(failure("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), HasSubstr("not valid HTTP"));
}

TEST(CtlResponse, LimitsOnHeadHeadersAndBody) {
  HttpLimits limits;
  limits.max_header_bytes = 64;
  EXPECT_EQ(
      failure("HTTP/1.1 200 OK\r\nX-Long: " + std::string(100, 'a') + "\r\nContent-Length: 0\r\n\r\n", false, limits),
      "the agent's response head is too large");
  limits = {};
  limits.max_headers = 2;
  EXPECT_EQ(failure("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 0\r\n\r\n", false, limits),
            "too many headers in the agent's answer");
  EXPECT_EQ(parseResponse("HTTP/1.1 200 OK\r\nA: 1\r\nContent-Length: 0\r\n\r\n", false, limits).headers.size(), 2u);
  limits = {};
  limits.max_body_bytes = 4;
  EXPECT_EQ(failure("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde", false, limits),
            "the agent's response body is too large");
  EXPECT_EQ(failure("HTTP/1.0 200 OK\r\n\r\nabcde", false, limits), "the agent's response body is too large");
  EXPECT_EQ(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd", false, limits).body, "abcd");
}

HttpResponse logAnswer(const std::string& next, const std::string& size, const std::string& more) {
  HttpResponse r;
  r.status = 200;
  if (!next.empty()) r.headers.emplace_back("x-phonefarm-next-offset", next);
  if (!size.empty()) r.headers.emplace_back("x-phonefarm-log-size", size);
  if (!more.empty()) r.headers.emplace_back("x-phonefarm-more", more);
  return r;
}

std::string logRefusal(const HttpResponse& r, std::uint64_t offset) {
  try {
    readLogChunk(r, offset);
  } catch (const Exit& e) {
    EXPECT_EQ(e.code, kExitApi);
    return e.message;
  }
  return "accepted";
}

TEST(CtlLogChunk, ReadsTheThreeHeadersOffTheWire) {
  const LogChunk chunk = readLogChunk(parseResponse("HTTP/1.1 200 OK\r\nX-Phonefarm-Next-Offset: 1048576\r\n"
                                                    "X-Phonefarm-Log-Size: 3000000\r\nX-Phonefarm-More: true\r\n"
                                                    "Content-Length: 0\r\n\r\n"),
                                      0);
  EXPECT_EQ(chunk.next_offset, 1048576u);
  EXPECT_EQ(chunk.log_size, 3000000u);
  EXPECT_TRUE(chunk.more);
  EXPECT_TRUE(chunk.capped());
}

TEST(CtlLogChunk, AtTheEndOfTheLog) {
  const LogChunk running = readLogChunk(logAnswer("12", "12", "true"), 5);
  EXPECT_FALSE(running.capped());
  EXPECT_TRUE(running.more);
  const LogChunk ended = readLogChunk(logAnswer("12", "12", "false"), 12);
  EXPECT_FALSE(ended.capped());
  EXPECT_FALSE(ended.more);
  EXPECT_FALSE(readLogChunk(logAnswer("12", "12", ""), 12).more);
  EXPECT_FALSE(readLogChunk(logAnswer("12", "12", "TRUE"), 12).more);
}

TEST(CtlLogChunk, MissingOrBadNumbersAreRefused) {
  EXPECT_EQ(logRefusal(logAnswer("", "12", "true"), 0),
            "the agent's log answer has no valid x-phonefarm-next-offset header");
  EXPECT_EQ(logRefusal(logAnswer("12", "", "true"), 0),
            "the agent's log answer has no valid x-phonefarm-log-size header");
  EXPECT_THAT(logRefusal(logAnswer("-1", "12", "true"), 0), HasSubstr("next-offset"));
  EXPECT_THAT(logRefusal(logAnswer("12x", "12", "true"), 0), HasSubstr("next-offset"));
  EXPECT_THAT(logRefusal(logAnswer("12", "99999999999999999999999", "true"), 0), HasSubstr("log-size"));
}

TEST(CtlLogChunk, GoingBackwardsIsRefused) {
  EXPECT_EQ(logRefusal(logAnswer("4", "12", "true"), 5), "the agent's log answer went backwards");
  EXPECT_EQ(readLogChunk(logAnswer("5", "12", "true"), 5).next_offset, 5u);
}

}  // namespace
}  // namespace phonefarm::ctl
