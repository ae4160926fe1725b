// FastAPI-compatible error responses (docs/api.md "Errors"): {"detail": "..."} for
// most codes, {"detail": [{loc, msg, type}, ...]} for 422, and an error_id on
// 500 that matches the log line carrying the cause.
#pragma once

#include <string_view>

#include "agent/api/request_validation.hpp"
#include "agent/http/http_message.hpp"
#include "common/result.hpp"

namespace phonefarm::api {

http::HttpResponse jsonResponse(int status, const boost::json::value& body);
http::HttpResponse detailResponse(int status, std::string_view detail);
http::HttpResponse validationResponse(const FieldErrors& errors);
http::HttpResponse unauthorizedResponse();
http::HttpResponse forbiddenResponse();
http::HttpResponse methodNotAllowedResponse(std::string_view allow);
// Logs `what` with a fresh error_id and returns the 500 that names it.
http::HttpResponse internalErrorResponse(std::string_view what);
// Maps a store/service error to its response (404/409/503/500).
http::HttpResponse errorResponse(const Error& error);

}  // namespace phonefarm::api
