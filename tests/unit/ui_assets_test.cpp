// The rack page's embedded files (agent/api/ui_assets): which paths are UI
// routes, content types by extension, the security headers on every answer
// (404 included), and ETag revalidation with If-None-Match as RFC 9110
// §13.1.2 has it (a list, weak tags, "*").
#include "agent/api/ui_assets.hpp"

#include <gtest/gtest.h>

#include <string>

namespace phonefarm::api {
namespace {

std::string header(const http::HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

TEST(UiAssets, RoutesAndContentTypes) {
  EXPECT_EQ(uiAssetName("/"), "index.html");
  EXPECT_EQ(uiAssetName("/ui/app.js"), "app.js");
  EXPECT_EQ(uiAssetName("/processes"), std::nullopt);
  EXPECT_EQ(uiAssetName("/uix"), std::nullopt);
  EXPECT_EQ(uiContentType("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(uiContentType("app.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(uiContentType("rack.css"), "text/css; charset=utf-8");
  EXPECT_EQ(uiContentType("icon.png"), "image/png");
}

TEST(UiAssets, EveryFileIsEmbeddedWithAQuotedETagOfItsOwn) {
  const auto assets = embeddedUiAssets();
  ASSERT_GE(assets.size(), 5u);
  bool index = false;
  for (const auto& a : assets) {
    index = index || a.name == "index.html";
    EXPECT_FALSE(a.body.empty()) << a.name;
    EXPECT_EQ(a.etag.size(), 34u) << a.name;  // 32 hex digits, quoted
    EXPECT_EQ(a.etag.front(), '"');
    for (const auto& b : assets) {
      if (&a != &b) {
        EXPECT_NE(a.etag, b.etag) << a.name << " " << b.name;
      }
    }
  }
  EXPECT_TRUE(index);
}

TEST(UiAssets, AnswersCarryTheSecurityHeaders) {
  for (const char* name : {"index.html", "no-such-file.js"}) {
    const auto r = uiAssetResponse(name, "");
    EXPECT_EQ(header(r, "Content-Security-Policy").rfind("default-src 'self'", 0), 0u) << name;
    EXPECT_EQ(header(r, "X-Content-Type-Options"), "nosniff") << name;
    EXPECT_EQ(header(r, "Referrer-Policy"), "no-referrer") << name;
  }
  EXPECT_EQ(uiAssetResponse("no-such-file.js", "").status, 404);
  EXPECT_EQ(uiAssetResponse("../index.html", "").status, 404);
}

TEST(UiAssets, IfNoneMatchRevalidates) {
  const auto first = uiAssetResponse("rack.css", "");
  ASSERT_EQ(first.status, 200);
  const std::string etag = header(first, "ETag");
  for (const std::string& inm : {etag, "W/" + etag, "\"other\", " + etag, std::string("*")}) {
    const auto r = uiAssetResponse("rack.css", inm);
    EXPECT_EQ(r.status, 304) << inm;
    EXPECT_TRUE(r.body.empty()) << inm;
    EXPECT_EQ(header(r, "ETag"), etag) << inm;
  }
  for (const std::string& inm : {std::string("\"other\""), etag.substr(1), std::string("W/\"x\"")}) {
    EXPECT_EQ(uiAssetResponse("rack.css", inm).status, 200) << inm;
  }
}

}  // namespace
}  // namespace phonefarm::api
