// AgentClient and the wording of the agent's refusals; see agent_client.hpp.
#include "agent/ctl/agent_client.hpp"

#include <boost/json.hpp>
#include <iostream>
#include <vector>

#include "agent/ctl/output.hpp"

namespace phonefarm::ctl {
namespace {

namespace json = boost::json;

std::string detailText(const json::value& detail) {
  if (detail.is_string()) return clean(detail.get_string());
  return clean(json::serialize(detail));
}

// 422 detail entry -> "field: message".
std::string validationLine(const json::value& entry) {
  if (!entry.is_object()) return detailText(entry);
  const auto& e = entry.get_object();
  std::string field;
  if (const auto* loc = arrayAt(e, "loc")) {
    std::vector<std::string> parts;
    for (const auto& p : *loc) parts.push_back(p.is_string() ? clean(p.get_string()) : clean(json::serialize(p)));
    // Drop the leading "body"/"query"/"path" unless it is all there is.
    std::size_t start = parts.size() > 1 && (parts[0] == "body" || parts[0] == "query" || parts[0] == "path") ? 1 : 0;
    for (std::size_t i = start; i < parts.size(); ++i) field += (field.empty() ? "" : ".") + parts[i];
  }
  if (field.empty()) field = "request";
  const json::value* msg = e.if_contains("msg");
  return field + ": " + (msg != nullptr && msg->is_string() ? clean(msg->get_string()) : cell(msg));
}

}  // namespace

HttpResponse AgentClient::call(std::string_view method, const std::string& target, const std::string& body) const {
  HeaderList headers{{"Authorization", "Bearer " + token_}};
  if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
  try {
    return httpRequest(url_, method, target, body, headers, timeout_, {}, tls_);
  } catch (const TransportError& e) {
    throw Exit{kExitUnreachable, "cannot reach the agent at " + url_text_ + ": " + e.what()};
  }
}

std::optional<json::value> parseJson(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return std::nullopt;
  return v;
}

Exit apiError(const HttpResponse& r, const ErrorContext& ctx) {
  auto body = parseJson(r.body);
  const json::value* detail = nullptr;
  if (body && body->is_object()) detail = body->get_object().if_contains("detail");
  switch (r.status) {
    case 401:
      return {kExitApi, "the token was not accepted (401)"};
    case 403:
      return {kExitApi, "your token lacks the " + ctx.scope + " scope (403)"};
    case 404:
      if (!ctx.not_found.empty()) return {kExitApi, ctx.not_found};
      break;
    case 422:
      if (detail != nullptr && detail->is_array()) {
        std::string msg = "the agent rejected the request (422):";
        for (const auto& e : detail->get_array()) msg += "\n  " + validationLine(e);
        return {kExitApi, msg};
      }
      break;
    default:
      break;
  }
  std::string msg = "the agent answered " + std::to_string(r.status);
  if (!r.reason.empty()) msg += " " + clean(r.reason);
  if (detail != nullptr) {
    msg += ": " + detailText(*detail);
  } else if (!r.body.empty()) {
    msg += ": " + clean(r.body.substr(0, 200));
  }
  if (body && body->is_object()) {
    if (const auto* id = body->get_object().if_contains("error_id")) msg += " (error_id " + cell(id) + ")";
  }
  return {kExitApi, msg};
}

json::value expectOk(const HttpResponse& r, const ErrorContext& ctx, bool echo_json) {
  if (r.status < 200 || r.status > 299) {
    if (echo_json && !r.body.empty()) std::cout << r.body << (r.body.back() == '\n' ? "" : "\n");
    throw apiError(r, ctx);
  }
  auto v = parseJson(r.body);
  if (!v) throw Exit{kExitApi, "the agent answered " + std::to_string(r.status) + " with a body that is not JSON"};
  return std::move(*v);
}

void printRaw(const HttpResponse& r) { std::cout << r.body << (r.body.empty() || r.body.back() != '\n' ? "\n" : ""); }

}  // namespace phonefarm::ctl
