// Routing, authentication, scopes and content-type checks of the API.
#include "agent/api/api_handler.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <optional>

#include "agent/api/error_responses.hpp"
#include "agent/api/request_validation.hpp"
#include "agent/api/ui_assets.hpp"

namespace phonefarm::api {
namespace {

enum class Route {
  kHealthz,
  kReadyz,
  kMetrics,
  kProcesses,
  kProcess,
  kProcessCancel,
  kLegacyCancel,
  kPhones,
  kHubs,
  kPhone,
  kPhoneReset,
  kPhoneResets,
  kItemLogs,
  kDebug,
  kEvents,
  kWhoami,
  kUiAsset
};

struct RouteMatch {
  RouteMatch(Route r, std::string i, std::string item = {}) : route(r), id(std::move(i)), item_id(std::move(item)) {}
  Route route;
  std::string id;       // the {process_id} or {phone_id} segment, or the UI asset's name
  std::string item_id;  // the {queue_item_id} segment of kItemLogs
};

// Matches the path against the API's routes; nullopt = unknown path (404).
std::optional<RouteMatch> matchRoute(std::string_view path) {
  if (auto asset = uiAssetName(path)) return RouteMatch{Route::kUiAsset, std::string(*asset)};
  if (path == "/healthz") return RouteMatch{Route::kHealthz, {}};
  if (path == "/readyz") return RouteMatch{Route::kReadyz, {}};
  if (path == "/metrics") return RouteMatch{Route::kMetrics, {}};
  if (path == "/debug") return RouteMatch{Route::kDebug, {}};
  if (path == "/events") return RouteMatch{Route::kEvents, {}};
  if (path == "/processes") return RouteMatch{Route::kProcesses, {}};
  if (path == "/cancel") return RouteMatch{Route::kLegacyCancel, {}};
  if (path == "/phones") return RouteMatch{Route::kPhones, {}};
  if (path == "/hubs") return RouteMatch{Route::kHubs, {}};
  if (path == "/whoami") return RouteMatch{Route::kWhoami, {}};
  if (constexpr std::string_view kPhones = "/phones/"; path.starts_with(kPhones)) {
    std::string_view rest = path.substr(kPhones.size());
    const auto slash = rest.find('/');
    std::string_view id = rest.substr(0, slash);
    if (id.empty()) return std::nullopt;
    if (slash == std::string_view::npos) return RouteMatch{Route::kPhone, std::string(id)};
    if (rest.substr(slash) == "/reset") return RouteMatch{Route::kPhoneReset, std::string(id)};
    if (rest.substr(slash) == "/resets") return RouteMatch{Route::kPhoneResets, std::string(id)};
    return std::nullopt;
  }
  constexpr std::string_view kPrefix = "/processes/";
  if (!path.starts_with(kPrefix)) return std::nullopt;
  std::string_view rest = path.substr(kPrefix.size());
  const auto slash = rest.find('/');
  std::string_view id = rest.substr(0, slash);
  if (id.empty()) return std::nullopt;
  if (slash == std::string_view::npos) return RouteMatch{Route::kProcess, std::string(id)};
  std::string_view tail = rest.substr(slash);
  if (tail == "/cancel") return RouteMatch{Route::kProcessCancel, std::string(id)};
  // /items/{queue_item_id}/logs
  constexpr std::string_view kItems = "/items/";
  constexpr std::string_view kLogs = "/logs";
  if (tail.starts_with(kItems) && tail.ends_with(kLogs) && tail.size() > kItems.size() + kLogs.size()) {
    std::string_view item = tail.substr(kItems.size(), tail.size() - kItems.size() - kLogs.size());
    if (item.find('/') == std::string_view::npos)
      return RouteMatch{Route::kItemLogs, std::string(id), std::string(item)};
  }
  return std::nullopt;
}

struct RouteRule {
  std::string_view allow;  // methods, for 405's Allow header
  bool needs_auth;
  Scope get_scope;
  Scope post_scope;
};

RouteRule ruleFor(Route r) {
  switch (r) {
    case Route::kHealthz:
    case Route::kUiAsset:  // the page's files are public; its API calls carry the token
      return {"GET", false, Scope::kRead, Scope::kRead};
    case Route::kReadyz:
    case Route::kMetrics:
      return {"GET", true, Scope::kRead, Scope::kRead};
    case Route::kProcesses:
      return {"GET, POST", true, Scope::kRead, Scope::kSchedule};
    case Route::kProcess:
      return {"GET", true, Scope::kRead, Scope::kRead};
    case Route::kProcessCancel:
    case Route::kLegacyCancel:
    case Route::kPhoneReset:
      return {"POST", true, Scope::kOperate, Scope::kOperate};
    case Route::kPhones:
    case Route::kHubs:
    case Route::kPhone:
    case Route::kPhoneResets:
    case Route::kItemLogs:
    case Route::kEvents:
    case Route::kWhoami:  // any valid token: read is the smallest scope
      return {"GET", true, Scope::kRead, Scope::kRead};
    case Route::kDebug:
      return {"GET", true, Scope::kOperate, Scope::kOperate};
  }
  return {"", true, Scope::kSchedule, Scope::kSchedule};
}

// The route's template, the `route` label of the request metrics.
std::string_view routeTemplate(Route r) {
  switch (r) {
    case Route::kHealthz:
      return "/healthz";
    case Route::kReadyz:
      return "/readyz";
    case Route::kMetrics:
      return "/metrics";
    case Route::kProcesses:
      return "/processes";
    case Route::kProcess:
      return "/processes/{process_id}";
    case Route::kProcessCancel:
      return "/processes/{process_id}/cancel";
    case Route::kLegacyCancel:
      return "/cancel";
    case Route::kPhones:
      return "/phones";
    case Route::kHubs:
      return "/hubs";
    case Route::kPhone:
      return "/phones/{phone_id}";
    case Route::kPhoneReset:
      return "/phones/{phone_id}/reset";
    case Route::kPhoneResets:
      return "/phones/{phone_id}/resets";
    case Route::kItemLogs:
      return "/processes/{process_id}/items/{queue_item_id}/logs";
    case Route::kDebug:
      return "/debug";
    case Route::kEvents:
      return "/events";
    case Route::kWhoami:
      return "/whoami";
    case Route::kUiAsset:
      return "/ui/{asset}";
  }
  return "unmatched";
}

// The `method` label: the methods HTTP defines, anything else is "other".
std::string_view methodLabel(std::string_view method) {
  for (std::string_view m : {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}) {
    if (method == m) return m;
  }
  return "other";
}

// HEAD is served wherever GET is (RFC 9110 §9.1): the same answer without
// its body, which the socket layer drops.
std::string_view routingMethod(std::string_view method) { return method == "HEAD" ? "GET" : method; }

// The Allow header of a 405: HEAD goes with every GET.
std::string allowHeader(std::string_view allow) {
  std::string out(allow);
  if (const auto get = out.find("GET"); get != std::string::npos) out.insert(get + 3, ", HEAD");
  return out;
}

bool methodAllowed(std::string_view allow, std::string_view method) {
  // `allow` is a short list like "GET, POST".
  std::size_t pos = 0;
  while (pos < allow.size()) {
    auto end = allow.find(", ", pos);
    if (allow.substr(pos, end - pos) == method) return true;
    if (end == std::string_view::npos) break;
    pos = end + 2;
  }
  return false;
}

bool isJsonContentType(std::string_view ct) {
  ct = ct.substr(0, ct.find(';'));
  while (!ct.empty() && (ct.back() == ' ' || ct.back() == '\t')) ct.remove_suffix(1);
  std::string lower(ct);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "application/json" || (lower.starts_with("application/") && lower.ends_with("+json"));
}

// Once, before routing, as ASGI servers do: "/processes/p%3A1" is p:1. An
// encoded "/" then matches no route (ids never contain one); a NUL is refused.
std::optional<std::string> decodedPath(std::string_view target) {
  auto path = percentDecode(target.substr(0, target.find('?')), false);
  if (!path || path->find('\0') != std::string::npos) return std::nullopt;
  return path;
}

http::HttpResponse malformedPathResponse() {
  return detailResponse(400, "Malformed percent-encoding in the request path");
}

// What the routing, method, token and scope checks decided: a refusal, or
// the route to serve. Shared by handle() and preflight().
struct Admission {
  std::optional<http::HttpResponse> refusal;
  std::optional<RouteMatch> match;
  std::string_view route_template = "unmatched";  // the metrics label, also on refusals
  std::string principal;                          // the token's name once it is valid
  std::optional<Scope> scope;                     // and its scope
};

Admission admit(const ApiServices& s, const http::HttpRequest& request, const std::string& path) {
  Admission a;
  a.match = matchRoute(path);
  if (!a.match) {
    a.refusal = detailResponse(404, "Not found");
    return a;
  }
  a.route_template = routeTemplate(a.match->route);
  RouteRule rule = ruleFor(a.match->route);
  // A Prometheus that scrapes without a token ([http] metrics_require_token = false).
  if (a.match->route == Route::kMetrics && !s.config.http.metrics_require_token) rule.needs_auth = false;
  const std::string_view method = routingMethod(request.method);
  if (!methodAllowed(rule.allow, method)) {
    a.refusal = methodNotAllowedResponse(allowHeader(rule.allow));
  } else if (rule.needs_auth) {
    auto principal = s.tokens.authenticate(request.authorization);
    if (!principal) {
      a.refusal = unauthorizedResponse();
    } else {
      a.principal = principal->name;
      a.scope = principal->scope;
      if (!scopeAllows(principal->scope, method == "GET" ? rule.get_scope : rule.post_scope)) {
        a.refusal = forbiddenResponse();
      }
    }
  }
  return a;
}

}  // namespace

void ApiHandler::Call::reply(http::HttpResponse response) const {
  response.log_principal = principal;
  if (registry != nullptr) {
    const std::string method(methodLabel(request.method));
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started;
    registry
        ->counter("phonefarm_http_requests_total", "HTTP requests answered, by route template, method and status.",
                  {{"route", std::string(route)}, {"method", method}, {"status", std::to_string(response.status)}})
        .inc();
    registry
        ->histogram("phonefarm_http_request_duration_seconds",
                    "Time from receiving an HTTP request to answering it, by route template and method.",
                    metrics::defaultSecondsBuckets(), {{"route", std::string(route)}, {"method", method}})
        .observe(elapsed.count());
  }
  respond(std::move(response));
}

std::optional<http::HttpResponse> ApiHandler::preflight(const http::HttpRequest& request) const {
  const auto path = decodedPath(request.target);
  if (!path) return malformedPathResponse();
  return admit(s_, request, *path).refusal;
}

void ApiHandler::handle(http::HttpRequest request, http::Responder respond) {
  auto call = std::make_shared<Call>();
  call->started = std::chrono::steady_clock::now();
  call->registry = &metrics_;
  call->respond = std::move(respond);
  const auto q = request.target.find('?');
  call->query = q == std::string::npos ? std::string() : request.target.substr(q + 1);
  call->request = std::move(request);
  try {
    auto path = decodedPath(call->request.target);
    if (!path) return call->reply(malformedPathResponse());
    call->path = std::move(*path);
    Admission admission = admit(s_, call->request, call->path);
    call->route = admission.route_template;
    call->principal = std::move(admission.principal);
    call->scope = admission.scope;
    if (admission.refusal) return call->reply(std::move(*admission.refusal));
    auto& match = admission.match;
    const std::string method(routingMethod(call->request.method));
    if (call->request.has_body && !call->request.content_type.empty() &&
        !isJsonContentType(call->request.content_type)) {
      return call->reply(detailResponse(415, "Unsupported Media Type: send application/json"));
    }
    switch (match->route) {
      case Route::kHealthz:
        return getHealthz(call);
      case Route::kReadyz:
        return getReadyz(call);
      case Route::kMetrics:
        return getMetrics(call);
      case Route::kProcesses:
        return method == "POST" ? postProcesses(call) : listProcesses(call);
      case Route::kProcess:
        return getProcess(call, std::move(match->id));
      case Route::kProcessCancel:
        return cancelProcess(call, std::move(match->id));
      case Route::kPhones:
        return getPhones(call, std::nullopt);
      case Route::kHubs:
        if (!s_.hubs) return call->reply(detailResponse(503, "Hubs are not available"));
        return call->reply(jsonResponse(200, boost::json::object{{"hubs", s_.hubs()}}));
      case Route::kPhone:
        return getPhones(call, std::move(match->id));
      case Route::kPhoneReset:
        return resetPhone(call, match->id);
      case Route::kPhoneResets:
        return listResets(call, match->id);
      case Route::kLegacyCancel:
        return cancelQueueItem(call);
      case Route::kItemLogs:
        return getItemLogs(call, std::move(match->id), std::move(match->item_id));
      case Route::kDebug:
        return getDebug(call);
      case Route::kEvents:
        return getEvents(call);
      case Route::kWhoami:
        return getWhoami(call);
      case Route::kUiAsset:
        return call->reply(uiAssetResponse(match->id, call->request.if_none_match));
    }
    call->reply(detailResponse(404, "Not found"));
  } catch (const std::exception& e) {
    call->reply(internalErrorResponse(e.what()));
  }
}

}  // namespace phonefarm::api
