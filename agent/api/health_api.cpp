// GET /healthz (liveness: the event loop answers) and GET /readyz (the store
// answers a query and its schema is migrated, and new work is accepted: not
// while the disk guard refuses submissions).
#include <boost/json/object.hpp>

#include "agent/api/api_handler.hpp"
#include "agent/api/error_responses.hpp"
#include "common/store/migrations.hpp"

namespace phonefarm::api {

void ApiHandler::getHealthz(const CallPtr& call) {
  call->reply(jsonResponse(200, boost::json::object{{"status", "ok"}}));
}

void ApiHandler::getReadyz(const CallPtr& call) {
  s_.store.submit<int>([](store::Db& db) { return store::userVersion(db); },
                       [this, call](Result<int> version) {
                         onIo([this, call, version = std::move(version)] {
                           const int expected = static_cast<int>(store::migrations().size());
                           if (!version) return call->reply(detailResponse(503, "store unavailable"));
                           if (*version != expected)
                             return call->reply(detailResponse(503, "store migrations pending"));
                           boost::json::object body{{"status", "ready"}, {"store", "ok"}, {"schema_version", *version}};
                           if (s_.readiness_details) {
                             for (auto& kv : s_.readiness_details()) body[kv.key()] = kv.value();
                           }
                           // Not ready for new work (the disk guard): 503, with the details.
                           if (auto why = s_.not_ready_reason ? s_.not_ready_reason() : std::nullopt) {
                             body["status"] = "not_ready";
                             body["detail"] = *why;
                             return call->reply(jsonResponse(503, body));
                           }
                           call->reply(jsonResponse(200, body));
                         });
                       });
}

}  // namespace phonefarm::api
