// POST /processes/{id}/cancel (the seed contract) and the legacy
// queue-item-level POST /cancel: validation, then the CancelService, then the
// response shape of docs/api.md.
#include <boost/json/object.hpp>
#include <boost/json/value_from.hpp>

#include "agent/api/api_handler.hpp"
#include "agent/api/error_responses.hpp"
#include "common/ids.hpp"
#include "common/model/process_json.hpp"

namespace phonefarm::api {
namespace {

namespace json = boost::json;

json::object terminationJson(const cancel::CancelOutcome& outcome) {
  const auto& t = outcome.termination;
  json::object o;
  o["process_id"] = outcome.plan.after.process_id;
  o["status"] = cancel::toString(t.status);
  o["terminate_issued"] = t.terminate_issued;
  o["force_at"] = optionalTime(outcome.plan.force_at);
  o["container"] = t.container ? json::value(*t.container) : json::value(nullptr);
  o["phone_reset"] = t.phone_reset ? json::value(*t.phone_reset) : json::value(nullptr);
  if (t.error) o["error"] = *t.error;
  return o;
}

json::object cancelResponseJson(const cancel::CancelOutcome& outcome) {
  const Process& p = outcome.plan.after;
  json::value active_item = nullptr;
  if (outcome.plan.executing_item_id) active_item = *outcome.plan.executing_item_id;
  json::object target{{"process_id", p.process_id},
                      {"phone_id", p.phone_id},
                      {"account_id", p.account_id},
                      {"queue_item_id", active_item},
                      {"capability_request_id", p.capability_request_id}};
  json::object body;
  body.reserve(6);
  body["status"] = outcome.plan.audit.outcome;
  body["cancelled_queue_item_ids"] = json::value_from(outcome.plan.cancelled_item_ids);
  body["active_queue_item_ids"] = json::value_from(outcome.plan.active_item_ids);
  body["active_target"] = std::move(target);
  body["termination"] = terminationJson(outcome);
  body["process"] = toJson(p);
  return body;
}

// Counts a cancel that reached the CancelService: by strategy and by outcome
// (cancel_requested, ignored_terminal, not_found or error).
void countCancel(metrics::Registry& registry, CancelStrategy strategy, const Result<cancel::CancelOutcome>& r) {
  std::string outcome = "error";
  if (r) {
    outcome = std::string(r->plan.audit.outcome);
  } else if (r.error().kind == ErrorKind::kNotFound) {
    outcome = "not_found";
  }
  registry
      .counter("phonefarm_cancels_total", "Cancel requests handled through the API, by strategy and outcome.",
               {{"strategy", std::string(toString(strategy))}, {"outcome", std::move(outcome)}})
      .inc();
}

}  // namespace

void ApiHandler::cancelProcess(const CallPtr& call, std::string process_id) {
  auto parsed = parseCancelRequest(call->request.body);
  if (auto* errors = std::get_if<FieldErrors>(&parsed)) return call->reply(validationResponse(*errors));
  if (!isValidId(process_id)) return call->reply(detailResponse(404, "Process not found"));
  auto& req = std::get<CancelRequest>(parsed);
  cancel::CancelInput input{std::move(req.reason), std::move(req.requested_by), req.strategy, req.force_after_seconds};
  const CancelStrategy strategy = req.strategy;
  // CancelService calls back on the I/O thread (its `post`), after the terminator acted.
  s_.cancels.cancelProcess(std::move(process_id), std::move(input),
                           [this, call, strategy](Result<cancel::CancelOutcome> r) {
                             countCancel(metrics_, strategy, r);
                             if (!r) return call->reply(errorResponse(r.error()));
                             call->reply(jsonResponse(200, cancelResponseJson(*r)));
                           });
}

void ApiHandler::cancelQueueItem(const CallPtr& call) {
  auto parsed = parseLegacyCancelRequest(call->request.body);
  if (auto* errors = std::get_if<FieldErrors>(&parsed)) return call->reply(validationResponse(*errors));
  auto& req = std::get<LegacyCancelRequest>(parsed);
  cancel::CancelInput input{std::move(req.reason), std::move(req.requested_by), CancelStrategy::kSoftThenForce, 10};
  std::string item_id = req.queue_item_id;
  s_.cancels.cancelQueueItem(std::move(req.queue_item_id), std::move(input),
                             [this, call, item_id](Result<cancel::CancelOutcome> r) {
                               countCancel(metrics_, CancelStrategy::kSoftThenForce, r);
                               if (!r) return call->reply(errorResponse(r.error()));
                               json::value item = nullptr;
                               for (const auto& it : r->plan.after.items) {
                                 if (it.queue_item_id == item_id) item = toJson(it);
                               }
                               json::object body{{"status", r->plan.audit.outcome},
                                                 {"queue_item", std::move(item)},
                                                 {"process_id", r->plan.after.process_id},
                                                 {"termination", terminationJson(*r)}};
                               call->reply(jsonResponse(200, body));
                             });
}

}  // namespace phonefarm::api
