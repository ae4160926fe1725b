// The rack page's static files (agent/api/ui), compiled into the binary at
// build time (cmake/embed_ui_assets.cmake) and served without a token:
// GET / is index.html, GET /ui/<name> the others. The page then asks for a
// token and calls the API with it; the files themselves hold no secret.
// Every answer carries the page's security headers (a CSP of
// default-src 'self', nosniff, no referrer) and an ETag from the file's
// SHA-256, so a browser revalidates (If-None-Match -> 304) instead of
// downloading again.
#pragma once

#include <optional>
#include <span>
#include <string_view>

#include "agent/http/http_message.hpp"

namespace phonefarm::api {

struct EmbeddedAsset {
  std::string_view name;  // file name in agent/api/ui, e.g. "rack.js"
  std::string_view body;
  std::string_view etag;  // quoted, as the ETag header carries it
};

// Every embedded file (defined in the generated ui_assets_data.cpp).
std::span<const EmbeddedAsset> embeddedUiAssets();

// The path of a UI route ("/" or "/ui/<name>"): the asset's name; nullopt
// when the path is no UI route.
std::optional<std::string_view> uiAssetName(std::string_view path);

// Content-Type from the file name's extension.
std::string_view uiContentType(std::string_view name);

// The answer to GET/HEAD of asset `name`: 200 with the file, 304 when
// `if_none_match` names its ETag, 404 for a name that is not embedded.
http::HttpResponse uiAssetResponse(std::string_view name, std::string_view if_none_match);

}  // namespace phonefarm::api
