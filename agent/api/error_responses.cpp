// Error bodies in the shapes the control plane's FastAPI clients parse.
#include "agent/api/error_responses.hpp"

#include <spdlog/spdlog.h>

#include <boost/json/serialize.hpp>

#include "common/ids.hpp"

namespace phonefarm::api {

http::HttpResponse jsonResponse(int status, const boost::json::value& body) {
  http::HttpResponse r;
  r.status = status;
  r.body = boost::json::serialize(body);
  return r;
}

http::HttpResponse detailResponse(int status, std::string_view detail) {
  return jsonResponse(status, boost::json::object{{"detail", detail}});
}

http::HttpResponse validationResponse(const FieldErrors& errors) {
  boost::json::array detail;
  detail.reserve(errors.size());
  for (const auto& e : errors) detail.push_back(boost::json::object{{"loc", e.loc}, {"msg", e.msg}, {"type", e.type}});
  return jsonResponse(422, boost::json::object{{"detail", std::move(detail)}});
}

http::HttpResponse unauthorizedResponse() {
  auto r = detailResponse(401, "Not authenticated");
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

http::HttpResponse forbiddenResponse() { return detailResponse(403, "Forbidden"); }

http::HttpResponse methodNotAllowedResponse(std::string_view allow) {
  auto r = detailResponse(405, "Method Not Allowed");
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

http::HttpResponse internalErrorResponse(std::string_view what) {
  const std::string error_id = newUuidV4();
  spdlog::error("http.internal_error error_id={} cause={}", error_id, what);
  return jsonResponse(500, boost::json::object{{"detail", "Internal error"}, {"error_id", error_id}});
}

http::HttpResponse errorResponse(const Error& error) {
  switch (error.kind) {
    case ErrorKind::kNotFound:
      return detailResponse(404, error.message);
    case ErrorKind::kConflict:
      return detailResponse(409, error.message);
    case ErrorKind::kInvalid:
      return detailResponse(400, error.message);
    case ErrorKind::kUnavailable:
      spdlog::warn("store.unavailable cause={}", error.message);
      return detailResponse(503, "Store unavailable; nothing was changed, retry later");
    case ErrorKind::kInternal:
      break;
  }
  return internalErrorResponse(error.message);
}

}  // namespace phonefarm::api
