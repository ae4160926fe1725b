// The RFC 9112 request-head rules of the HTTP session (request_framing.hpp):
// Transfer-Encoding, Host, absolute-form targets and the Date format.
#include "agent/http/request_framing.hpp"

#include <gtest/gtest.h>

namespace phonefarm::http {
namespace {

std::optional<int> teStatus(std::vector<std::string_view> values, bool has_length = false, unsigned version = 11) {
  auto e = checkTransferEncoding(values, has_length, version);
  if (!e) return std::nullopt;
  return e->status;
}

TEST(RequestFramingTest, OnlyChunkedAloneIsAccepted) {
  EXPECT_EQ(teStatus({}), std::nullopt);
  EXPECT_EQ(teStatus({"chunked"}), std::nullopt);
  EXPECT_EQ(teStatus({"Chunked"}), std::nullopt);
  EXPECT_EQ(teStatus({" chunked "}), std::nullopt);
}

TEST(RequestFramingTest, OtherCodingsAre501) {
  EXPECT_EQ(teStatus({"gzip"}), 501);
  EXPECT_EQ(teStatus({"identity"}), 501);
  EXPECT_EQ(teStatus({"gzip, chunked"}), 501);
  EXPECT_EQ(teStatus({"gzip", "chunked"}), 501);  // two field lines are one list
  EXPECT_EQ(teStatus({"x-custom;q=1, chunked"}), 501);
}

TEST(RequestFramingTest, ChunkedNotLastOrTwiceIs400) {
  EXPECT_EQ(teStatus({"chunked, gzip"}), 400);
  EXPECT_EQ(teStatus({"chunked", "gzip"}), 400);
  EXPECT_EQ(teStatus({"chunked, chunked"}), 400);
  EXPECT_EQ(teStatus({" , "}), 400);
}

TEST(RequestFramingTest, TransferEncodingWithContentLengthOrHttp10Is400) {
  EXPECT_EQ(teStatus({"chunked"}, true), 400);
  EXPECT_EQ(teStatus({"gzip"}, true), 400);
  EXPECT_EQ(teStatus({"identity"}, true), 400);
  EXPECT_EQ(teStatus({"chunked"}, false, 10), 400);
  EXPECT_EQ(teStatus({}, true), std::nullopt);
}

std::optional<int> hostStatus(std::vector<std::string_view> hosts, unsigned version = 11) {
  auto e = checkHost(hosts, version);
  if (!e) return std::nullopt;
  return e->status;
}

TEST(RequestFramingTest, Http11NeedsExactlyOneValidHost) {
  EXPECT_EQ(hostStatus({"127.0.0.1:8787"}), std::nullopt);
  EXPECT_EQ(hostStatus({"localhost"}), std::nullopt);
  EXPECT_EQ(hostStatus({"[::1]:8787"}), std::nullopt);
  EXPECT_EQ(hostStatus({"rack-7.example"}), std::nullopt);
  EXPECT_EQ(hostStatus({""}), std::nullopt);  // allowed when the authority is empty
  EXPECT_EQ(hostStatus({}), 400);
  EXPECT_EQ(hostStatus({"a", "a"}), 400);
  EXPECT_EQ(hostStatus({"bad host"}), 400);
  EXPECT_EQ(hostStatus({"host:port"}), 400);
  EXPECT_EQ(hostStatus({"host:123456"}), 400);
  EXPECT_EQ(hostStatus({"a/b"}), 400);
  EXPECT_EQ(hostStatus({"[::1"}), 400);
  EXPECT_EQ(hostStatus({"user@host"}), 400);
}

TEST(RequestFramingTest, Http10MayOmitHostButNotSendTwo) {
  EXPECT_EQ(hostStatus({}, 10), std::nullopt);
  EXPECT_EQ(hostStatus({"a", "b"}, 10), 400);
  EXPECT_EQ(hostStatus({"bad host"}, 10), 400);
}

TEST(RequestFramingTest, AbsoluteFormBecomesOriginForm) {
  EXPECT_EQ(toOriginForm("/healthz"), "/healthz");
  EXPECT_EQ(toOriginForm("http://127.0.0.1:8787/healthz"), "/healthz");
  EXPECT_EQ(toOriginForm("HTTP://localhost/processes?limit=2"), "/processes?limit=2");
  EXPECT_EQ(toOriginForm("https://[::1]:8787/phones"), "/phones");
  EXPECT_EQ(toOriginForm("http://localhost"), "/");
  EXPECT_EQ(toOriginForm("http://localhost?x=1"), "/?x=1");
  EXPECT_EQ(toOriginForm("ftp://localhost/x"), std::nullopt);
  EXPECT_EQ(toOriginForm("http:///x"), std::nullopt);
  EXPECT_EQ(toOriginForm("http://user@host/x"), std::nullopt);
  EXPECT_EQ(toOriginForm("healthz"), std::nullopt);
}

TEST(RequestFramingTest, DateIsImfFixdate) {
  using namespace std::chrono;
  EXPECT_EQ(httpDate(system_clock::time_point(seconds(784111777))), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(httpDate(system_clock::time_point(seconds(1796256000))), "Thu, 03 Dec 2026 00:00:00 GMT");
}

}  // namespace
}  // namespace phonefarm::http
