// Serving the embedded rack page: lookup, content types, security and cache
// headers (ui_assets.hpp).
#include "agent/api/ui_assets.hpp"

#include <string>

#include "agent/api/error_responses.hpp"

namespace phonefarm::api {
namespace {

constexpr std::string_view kUiPrefix = "/ui/";

// Only same-origin files, no inline script or style, never framed.
constexpr std::string_view kContentSecurityPolicy = "default-src 'self'; base-uri 'none'; frame-ancestors 'none'";

void addSecurityHeaders(http::HttpResponse& r) {
  r.headers.emplace_back("Content-Security-Policy", std::string(kContentSecurityPolicy));
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
}

// RFC 9110 §13.1.2: "*" or a list of entity tags, weak ones compared weakly.
bool etagMatches(std::string_view if_none_match, std::string_view etag) {
  std::size_t pos = 0;
  while (pos < if_none_match.size()) {
    auto end = if_none_match.find(',', pos);
    if (end == std::string_view::npos) end = if_none_match.size();
    std::string_view tag = if_none_match.substr(pos, end - pos);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == "*" || tag == etag) return true;
    pos = end + 1;
  }
  return false;
}

}  // namespace

std::optional<std::string_view> uiAssetName(std::string_view path) {
  if (path == "/") return "index.html";
  if (path.starts_with(kUiPrefix)) return path.substr(kUiPrefix.size());
  return std::nullopt;
}

std::string_view uiContentType(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".png")) return "image/png";
  return "application/octet-stream";
}

http::HttpResponse uiAssetResponse(std::string_view name, std::string_view if_none_match) {
  for (const auto& asset : embeddedUiAssets()) {
    if (asset.name != name) continue;
    http::HttpResponse r;
    addSecurityHeaders(r);
    r.headers.emplace_back("ETag", std::string(asset.etag));
    // Revalidate on every load (a 304 is cheap): an upgraded agent's page
    // is never mixed with the files of the one before.
    r.headers.emplace_back("Cache-Control", "no-cache");
    r.content_type = std::string(uiContentType(name));
    if (!if_none_match.empty() && etagMatches(if_none_match, asset.etag)) {
      r.status = 304;
      return r;
    }
    r.body = std::string(asset.body);
    return r;
  }
  auto r = detailResponse(404, "Not found");
  addSecurityHeaders(r);
  return r;
}

}  // namespace phonefarm::api
