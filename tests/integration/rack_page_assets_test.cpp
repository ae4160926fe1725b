// The rack page's files as the real agent serves them over real HTTP: no
// token needed, the right Content-Type, the security headers (CSP of
// default-src 'self', nosniff, no referrer), ETag revalidation, an unknown
// file is 404, and no file points at another origin.
#include <regex>
#include <set>
#include <string>

#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {
namespace {

class RackPageAssets : public AgentFixture {
 protected:
  Response getPublic(const std::string& target, const HttpClient::Headers& headers = {}) {
    return client_->request("GET", target, "", headers);
  }

  // The same-origin paths the page loads: src= and href= in index.html and
  // the modules' imports ("./x.js" -> /ui/x.js).
  std::set<std::string> referencedAssets(const std::string& text, const std::string& base) {
    std::set<std::string> out;
    static const std::regex kAttr(R"re((?:src|href)="([^"#]+)")re");
    static const std::regex kImport(R"re(from "(\./[^"]+)")re");
    for (std::sregex_iterator it(text.begin(), text.end(), kAttr), end; it != end; ++it)
      out.insert("/" + (*it)[1].str());
    for (std::sregex_iterator it(text.begin(), text.end(), kImport), end; it != end; ++it) {
      out.insert(base + (*it)[1].str().substr(2));
    }
    return out;
  }
};

TEST_F(RackPageAssets, IndexIsServedWithoutATokenWithTheSecurityHeaders) {
  auto r = getPublic("/");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "text/html; charset=utf-8");
  const auto csp = r.header("content-security-policy");
  EXPECT_TRUE(csp.starts_with("default-src 'self'")) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_EQ(r.header("x-content-type-options"), "nosniff");
  EXPECT_EQ(r.header("referrer-policy"), "no-referrer");
  EXPECT_FALSE(r.header("etag").empty());
  EXPECT_NE(r.body.find("<title>phonefarm rack</title>"), std::string::npos) << r.body;
  // No inline script or style: the CSP would block them.
  EXPECT_EQ(r.body.find("<style"), std::string::npos);
  EXPECT_EQ(r.body.find(" style="), std::string::npos);
  EXPECT_EQ(std::regex_search(r.body, std::regex("<script(?![^>]*\\bsrc=)")), false) << r.body;
}

TEST_F(RackPageAssets, EveryReferencedAssetHasItsContentTypeAndNoneNamesAnotherOrigin) {
  auto index = getPublic("/");
  ASSERT_EQ(index.status, 200);
  std::set<std::string> seen;
  std::set<std::string> todo = referencedAssets(index.body, "/ui/");
  ASSERT_GE(todo.size(), 3u) << index.body;  // the stylesheet, the icon, the entry module
  const std::regex kOtherOrigin(R"(https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import)", std::regex::icase);
  EXPECT_FALSE(std::regex_search(index.body, kOtherOrigin)) << "index.html";
  while (!todo.empty()) {
    const std::string path = *todo.begin();
    todo.erase(todo.begin());
    if (!seen.insert(path).second) continue;
    ASSERT_TRUE(path.starts_with("/ui/")) << path;
    auto r = getPublic(path);
    ASSERT_EQ(r.status, 200) << path << ": " << r.body;
    EXPECT_FALSE(r.header("content-security-policy").empty()) << path;
    EXPECT_EQ(r.header("x-content-type-options"), "nosniff") << path;
    if (path.ends_with(".js")) {
      EXPECT_EQ(r.header("content-type"), "text/javascript; charset=utf-8") << path;
      for (const auto& next : referencedAssets(r.body, "/ui/")) todo.insert(next);
    } else if (path.ends_with(".css")) {
      EXPECT_EQ(r.header("content-type"), "text/css; charset=utf-8") << path;
      EXPECT_EQ(r.body.find("url("), std::string::npos) << path << " loads nothing else";
    } else if (path.ends_with(".png")) {
      EXPECT_EQ(r.header("content-type"), "image/png") << path;
      EXPECT_TRUE(r.body.starts_with("\x89PNG")) << path;
      continue;
    }
    EXPECT_FALSE(std::regex_search(r.body, kOtherOrigin)) << path << " names another origin";
  }
  // index.html's module and the modules it imports.
  for (const char* module : {"/ui/app.js", "/ui/api.js", "/ui/rack.js", "/ui/detail.js", "/ui/dom.js"}) {
    EXPECT_TRUE(seen.contains(module)) << module;
  }
}

TEST_F(RackPageAssets, AnUnknownAssetIs404AndAnApiPathStillNeedsAToken) {
  for (const char* path : {"/ui/nope.js", "/ui/", "/ui/../tokens", "/ui/app.js/x", "/index.html"}) {
    auto r = getPublic(path);
    EXPECT_EQ(r.status, 404) << path << ": " << r.body;
  }
  EXPECT_EQ(getPublic("/phones").status, 401);
}

TEST_F(RackPageAssets, AnAssetIsRevalidatedByItsETag) {
  auto first = getPublic("/ui/rack.css");
  ASSERT_EQ(first.status, 200);
  const auto etag = first.header("etag");
  ASSERT_TRUE(etag.size() > 2 && etag.front() == '"' && etag.back() == '"') << etag;
  EXPECT_EQ(first.header("cache-control"), "no-cache");
  auto again = getPublic("/ui/rack.css", {{"If-None-Match", etag}});
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
  EXPECT_EQ(again.header("etag"), etag);
  auto other = getPublic("/ui/rack.css", {{"If-None-Match", "\"stale\""}});
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.body, first.body);
  EXPECT_NE(getPublic("/ui/app.js").header("etag"), etag) << "each file has its own ETag";
}

TEST_F(RackPageAssets, OnlyGetAndHeadAreAllowed) {
  auto head = client_->request("HEAD", "/ui/app.js");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
  auto post = client_->request("POST", "/", "{}");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.header("allow"), "GET, HEAD");
}

}  // namespace
}  // namespace phonefarm::testing
