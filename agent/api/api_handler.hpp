// ApiHandler: the request handler of the HTTP API (docs/api.md) as a function
// request -> response over the services; no sockets here. It routes, checks
// the bearer token and its scope, checks the body's content type, validates,
// and calls the resource (one .cpp per resource: health_api, processes_api,
// cancel_api, phones_api, metrics_api, logs_api, debug_api, events_api,
// whoami_api; the rack page's files from ui_assets, without a token). Store
// completions are marshalled back to the I/O thread with `post` before the
// response is built.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "agent/cancel/cancel_service.hpp"
#include "agent/http/auth.hpp"
#include "agent/http/http_message.hpp"
#include "common/clock.hpp"
#include "common/config/config.hpp"
#include "common/metrics/metrics.hpp"
#include "common/store/event_feed.hpp"
#include "common/store/store.hpp"

namespace phonefarm::phone {
class Inventory;
class ResetService;
}  // namespace phonefarm::phone

namespace phonefarm::api {

struct ApiServices {
  const AgentConfig& config;
  store::Store& store;
  cancel::CancelService& cancels;
  const Clock& clock;
  const http::TokenRegistry& tokens;
  // Runs a function on the thread that owns the connections.
  std::function<void(std::function<void()>)> post;
  // Extra fields for GET /readyz (e.g. the containment runtime), optional.
  std::function<boost::json::object()> readiness_details;
  // Called on the I/O thread after a submit committed: the phone may start work.
  std::function<void(const std::string& phone_id)> phone_changed = {};
  // The rack (GET /phones, POST /phones/{id}/reset); absent = 503 there.
  phone::Inventory* inventory = nullptr;
  phone::ResetService* resets = nullptr;
  // The phone's executing (process_id, queue_item_id), if any (I/O thread).
  std::function<std::optional<std::pair<std::string, std::string>>(const std::string& phone_id)> current_of = {};
  // GET /metrics: adds the metrics pulled at scrape time (executor, store,
  // phones, resets, connections) to a fresh registry; called on the I/O thread.
  std::function<void(metrics::Registry&)> collect = {};
  // GET /hubs: the hubs and their last event (HealService::hubsJson); called
  // on the I/O thread. none = 503.
  std::function<boost::json::array()> hubs = {};
  // GET /debug: the adb server's state (AdbProbe: version, devices -l), asked
  // off the I/O thread with a short deadline; `done` may run on any thread.
  std::function<void(std::function<void(boost::json::object)> done)> adb_probe = {};
  // Why new submissions are refused now (the disk guard: too little free
  // space), if they are: POST /processes answers 503 with it, GET /readyz
  // too. none = never.
  std::function<std::optional<std::string>()> submit_refusal = {};
  std::function<std::optional<std::string>()> not_ready_reason = {};
  // Where the handler records its own metrics (requests, cancels), shared
  // with the components that push theirs (store, resets); null = a registry
  // of the handler's own. Must outlive the handler.
  metrics::Registry* registry = nullptr;
  // GET /events reads the event log through it; absent = 503 there.
  store::EventFeed* events = nullptr;
};

class ApiHandler {
 public:
  explicit ApiHandler(ApiServices services) : s_(std::move(services)), started_at_(s_.clock.wallNowMs()) {}

  void handle(http::HttpRequest request, http::Responder respond);

  // The server's RequestPreflight: answers what handle() would refuse before
  // reading a body (bad path, 404, 405, 401, 403), nullopt otherwise.
  std::optional<http::HttpResponse> preflight(const http::HttpRequest& request) const;

  // GET /events streams open now (for /metrics).
  std::size_t openEventStreams() const { return event_streams_->load(); }

  // One request in flight: what it asked, who asked, how to answer.
  struct Call {
    http::HttpRequest request;
    http::Responder respond;
    std::string path;
    std::string query;
    std::string principal;       // token name, for the access log
    std::optional<Scope> scope;  // the token's scope (none: a route without auth)
    // For the request metrics: the route template (never the raw path, whose
    // ids would explode the label set), the start time, the registry.
    std::string_view route = "unmatched";
    std::chrono::steady_clock::time_point started;
    metrics::Registry* registry = nullptr;

    void reply(http::HttpResponse response) const;
  };
  using CallPtr = std::shared_ptr<Call>;

 private:
  void getHealthz(const CallPtr& call);
  void getReadyz(const CallPtr& call);
  void postProcesses(const CallPtr& call);
  void listProcesses(const CallPtr& call);
  void getProcess(const CallPtr& call, std::string process_id);
  void cancelProcess(const CallPtr& call, std::string process_id);
  void cancelQueueItem(const CallPtr& call);
  void getPhones(const CallPtr& call, std::optional<std::string> phone_id);
  void resetPhone(const CallPtr& call, const std::string& phone_id);
  void listResets(const CallPtr& call, const std::string& phone_id);
  void getMetrics(const CallPtr& call);
  void getItemLogs(const CallPtr& call, std::string process_id, std::string queue_item_id);
  void getDebug(const CallPtr& call);
  void getEvents(const CallPtr& call);
  void getWhoami(const CallPtr& call);

  // Runs `fn` on the I/O thread (from a store completion).
  void onIo(std::function<void()> fn) const { s_.post(std::move(fn)); }
  // The process object of docs/api.md with `waiting_for` (what holds a queued
  // process, from the phone inventory); on the I/O thread.
  boost::json::object processJson(const Process& process, const std::vector<CancelAuditEntry>* audit = nullptr) const;

  ApiServices s_;
  WallMs started_at_;  // GET /debug's uptime
  // Pushed metrics (requests, cancels): into s_.registry, else our own.
  std::unique_ptr<metrics::Registry> own_metrics_ =
      s_.registry == nullptr ? std::make_unique<metrics::Registry>() : nullptr;
  metrics::Registry& metrics_ = s_.registry != nullptr ? *s_.registry : *own_metrics_;
  // GET /events streams open now (http.max_event_streams); shared with the
  // streams, which may end after the handler.
  std::shared_ptr<std::atomic<std::size_t>> event_streams_ = std::make_shared<std::atomic<std::size_t>>(0);
};

}  // namespace phonefarm::api
