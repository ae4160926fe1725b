// Unit tests for phonefarmctl's --url parsing (agent/ctl/url.hpp): both
// schemes and their default ports, explicit ports, IPv6 literals, a base path,
// the Host header and the host:port of messages, every rejected form, and the
// percent-encoding of path segments and query values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "agent/ctl/url.hpp"

namespace phonefarm::ctl {
namespace {

using ::testing::HasSubstr;

std::string rejection(const std::string& text) {
  try {
    Url::parse(text);
  } catch (const UrlError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(CtlUrl, HttpDefaultsToPort80) {
  const Url url = Url::parse("http://127.0.0.1");
  EXPECT_FALSE(url.https);
  EXPECT_EQ(url.host, "127.0.0.1");
  EXPECT_EQ(url.port, 80);
  EXPECT_EQ(url.base_path, "");
  EXPECT_EQ(url.hostHeader(), "127.0.0.1");
  EXPECT_EQ(url.hostPort(), "127.0.0.1:80");
}

TEST(CtlUrl, HttpsDefaultsToPort443) {
  const Url url = Url::parse("https://rack-07.example");
  EXPECT_TRUE(url.https);
  EXPECT_EQ(url.host, "rack-07.example");
  EXPECT_EQ(url.port, 443);
  EXPECT_EQ(url.hostHeader(), "rack-07.example");
}

TEST(CtlUrl, SchemeIsCaseInsensitive) {
  EXPECT_TRUE(Url::parse("HTTPS://localhost:8787").https);
  EXPECT_FALSE(Url::parse("Http://localhost:8787").https);
}

TEST(CtlUrl, ExplicitPortGoesIntoTheHostHeaderUnlessItIsTheDefault) {
  const Url url = Url::parse("http://localhost:8787");
  EXPECT_EQ(url.port, 8787);
  EXPECT_EQ(url.hostHeader(), "localhost:8787");
  EXPECT_EQ(Url::parse("https://localhost:443").hostHeader(), "localhost");
  EXPECT_EQ(Url::parse("https://localhost:80").hostHeader(), "localhost:80");
  EXPECT_EQ(Url::parse("http://localhost:65535").port, 65535);
}

TEST(CtlUrl, Ipv6LiteralIsBracketedInHeadersButNotInHost) {
  const Url url = Url::parse("http://[::1]:8787");
  EXPECT_EQ(url.host, "::1");
  EXPECT_EQ(url.port, 8787);
  EXPECT_EQ(url.hostHeader(), "[::1]:8787");
  EXPECT_EQ(url.hostPort(), "[::1]:8787");
  const Url no_port = Url::parse("https://[fe80::1]/");
  EXPECT_EQ(no_port.host, "fe80::1");
  EXPECT_EQ(no_port.port, 443);
  EXPECT_EQ(no_port.hostHeader(), "[fe80::1]");
}

TEST(CtlUrl, BasePathLosesItsTrailingSlashes) {
  EXPECT_EQ(Url::parse("http://h:1/").base_path, "");
  EXPECT_EQ(Url::parse("http://h:1/agent").base_path, "/agent");
  EXPECT_EQ(Url::parse("http://h:1/agent/v1//").base_path, "/agent/v1");
}

TEST(CtlUrl, RejectsOtherSchemes) {
  EXPECT_THAT(rejection("ftp://host"), HasSubstr("must start with http:// or https://"));
  EXPECT_THAT(rejection("127.0.0.1:8787"), HasSubstr("got '127.0.0.1:8787'"));
  EXPECT_THAT(rejection("http:/host"), HasSubstr("must start with"));
  EXPECT_THAT(rejection(""), HasSubstr("must start with"));
}

TEST(CtlUrl, RejectsMissingOrBadHosts) {
  EXPECT_THAT(rejection("http://"), HasSubstr("has no host"));
  EXPECT_THAT(rejection("http://:8787"), HasSubstr("has no host"));
  EXPECT_THAT(rejection("http://[]:8787"), HasSubstr("has no host"));
  EXPECT_THAT(rejection("http://[::1:8787"), HasSubstr("unterminated ["));
  EXPECT_THAT(rejection("http://[::1]x"), HasSubstr("junk after"));
  EXPECT_THAT(rejection("http://ho st"), HasSubstr("bad character in the URL's host"));
  EXPECT_THAT(rejection("http://a\\b"), HasSubstr("bad character in the URL's host"));
  EXPECT_THAT(rejection("http://a]b"), HasSubstr("bad character in the URL's host"));
  EXPECT_THAT(rejection(std::string("http://a\x7f")), HasSubstr("bad character in the URL's host"));
}

TEST(CtlUrl, RejectsBadPorts) {
  EXPECT_THAT(rejection("http://h:"), HasSubstr("empty port"));
  EXPECT_THAT(rejection("http://[::1]:"), HasSubstr("empty port"));
  EXPECT_THAT(rejection("http://h:0"), HasSubstr("bad port"));
  EXPECT_THAT(rejection("http://h:65536"), HasSubstr("bad port"));
  EXPECT_THAT(rejection("http://h:-1"), HasSubstr("bad port"));
  EXPECT_THAT(rejection("http://h:80x"), HasSubstr("bad port"));
  EXPECT_THAT(rejection("http://h:99999999999999999999999"), HasSubstr("bad port"));
}

TEST(CtlUrl, RejectsUserInfoQueryFragmentAndControlCharacters) {
  EXPECT_THAT(rejection("http://user:pw@host"), HasSubstr("user information"));
  EXPECT_THAT(rejection("http://host/?a=1"), HasSubstr("query or fragment"));
  EXPECT_THAT(rejection("http://host?a=1"), HasSubstr("query or fragment"));
  EXPECT_THAT(rejection("http://host/x#top"), HasSubstr("query or fragment"));
  EXPECT_THAT(rejection("http://host/a b"), HasSubstr("bad character in the URL's path"));
  EXPECT_THAT(rejection("http://host/a\r\nX: y"), HasSubstr("bad character in the URL's path"));
}

TEST(CtlUrl, PercentEncodeKeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(percentEncode("phone_01-a.b~c"), "phone_01-a.b~c");
  EXPECT_EQ(percentEncode("a b/c?d&e=f"), "a%20b%2Fc%3Fd%26e%3Df");
  EXPECT_EQ(percentEncode("10.0.0.21:5555"), "10.0.0.21%3A5555");
  EXPECT_EQ(percentEncode("\xc3\xa9"), "%C3%A9");
  EXPECT_EQ(percentEncode(std::string("\0", 1)), "%00");
  EXPECT_EQ(percentEncode(""), "");
}

}  // namespace
}  // namespace phonefarm::ctl
