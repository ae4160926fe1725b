// GET /phones, GET /phones/{id}, POST /phones/{id}/reset, GET
// /phones/{id}/resets (docs/api.md "Phones"): the inventory's live view, the
// executor's current item, and from the store the queue depth, the last reset
// record and the reset history, a page at a time.
#include <boost/json.hpp>

#include "agent/api/api_handler.hpp"
#include "agent/api/error_responses.hpp"
#include "agent/api/request_validation.hpp"
#include "agent/phone/inventory.hpp"
#include "agent/phone/reset_service.hpp"
#include "common/model/process_json.hpp"
#include "common/store/phone_repository.hpp"

namespace phonefarm::api {
namespace {

namespace json = boost::json;

struct PhoneFacts {
  std::map<std::string, std::int64_t> depths;
  std::map<std::string, store::ResetRecord> last_resets;
};

// The reset record as docs/api.md ("Phones") shows it (also the body of POST .../reset's 202).
json::object resetJson(const store::ResetRecord& r) {
  return {{"reset_id", r.reset_id},
          {"phone_id", r.phone_id},
          {"trigger", r.trigger},
          {"status", r.status},
          {"reason", r.reason ? json::value(*r.reason) : json::value(nullptr)},
          {"requested_by", r.requested_by},
          {"requested_at", optionalTime(r.requested_at)},
          {"ended_at", optionalTime(r.ended_at)},
          {"steps", r.steps}};
}

// docs/api.md `attention` and `drops`.
json::value attentionJson(const phone::PhoneSnapshot& s) {
  if (!s.attention) return nullptr;
  return json::object{
      {"reason", s.attention->reason}, {"detail", s.attention->detail}, {"since", formatRfc3339(s.attention->since)}};
}

json::object dropsJson(const phone::PhoneSnapshot& s, std::chrono::seconds window) {
  return {{"count", s.drops}, {"window_seconds", window.count()}, {"last_at", optionalTime(s.last_drop_at)}};
}

json::object phoneJson(const phone::PhoneSnapshot& s, const PhoneFacts& facts,
                       const std::optional<std::pair<std::string, std::string>>& current, std::chrono::seconds window) {
  const std::string& id = s.config.id;
  const std::string health = phone::healthOf(s, current.has_value());
  json::object o{{"phone_id", id},
                 {"serial", s.config.serial},
                 {"usb_port", s.config.usb_port ? json::value(*s.config.usb_port) : json::value(nullptr)},
                 {"adb_state", s.adb_state},
                 {"health", health},
                 {"attention", attentionJson(s)},
                 {"drops", dropsJson(s, window)}};
  o["current"] = current ? json::value(json::object{{"process_id", current->first}, {"queue_item_id", current->second}})
                         : json::value(nullptr);
  auto depth = facts.depths.find(id);
  o["queue_depth"] = depth == facts.depths.end() ? 0 : depth->second;
  auto reset = facts.last_resets.find(id);
  o["last_reset"] = reset == facts.last_resets.end() ? json::value(nullptr) : json::value(resetJson(reset->second));
  return o;
}

}  // namespace

void ApiHandler::getPhones(const CallPtr& call, std::optional<std::string> phone_id) {
  if (s_.inventory == nullptr) return call->reply(detailResponse(503, "Phone inventory is not available"));
  if (phone_id && !s_.inventory->phone(*phone_id)) return call->reply(detailResponse(404, "Phone not found"));
  const bool all = call->query == "all=1" || call->query == "all=true";
  std::vector<std::string> ids;
  for (const auto& p : s_.config.phones) {
    if (!phone_id || p.id == *phone_id) ids.push_back(p.id);
  }
  s_.store.submit<PhoneFacts>(
      [ids = std::move(ids)](store::Db& db) {
        store::PhoneRepository repo(db);
        PhoneFacts facts;
        facts.depths = repo.queueDepths();
        for (const auto& id : ids) {
          if (auto r = repo.lastReset(id)) facts.last_resets.emplace(id, std::move(*r));
        }
        return facts;
      },
      [this, call, phone_id, all](Result<PhoneFacts> facts) {
        onIo([this, call, phone_id, all, facts = std::move(facts)] {
          if (!facts) return call->reply(errorResponse(facts.error()));
          auto current = [this](const std::string& id) {
            return s_.current_of ? s_.current_of(id) : std::optional<std::pair<std::string, std::string>>{};
          };
          if (phone_id) {
            auto s = s_.inventory->phone(*phone_id);
            return call->reply(
                jsonResponse(200, phoneJson(*s, *facts, current(*phone_id), s_.config.heal.flap_window)));
          }
          json::array phones;
          for (const auto& s : s_.inventory->phones())
            phones.push_back(phoneJson(s, *facts, current(s.config.id), s_.config.heal.flap_window));
          json::object body{{"phones", std::move(phones)}};
          if (all) {
            // Devices the adb server reports that no [[phones]] entry names.
            json::array unassigned;
            for (const auto& d : s_.inventory->unassigned()) {
              json::object props;
              for (const auto& [k, v] : d.props) props[k] = v;
              unassigned.push_back(json::object{
                  {"serial", d.serial}, {"adb_state", d.state}, {"assigned", false}, {"properties", std::move(props)}});
            }
            body["unassigned"] = std::move(unassigned);
          }
          call->reply(jsonResponse(200, std::move(body)));
        });
      });
}

void ApiHandler::listResets(const CallPtr& call, const std::string& phone_id) {
  if (s_.inventory == nullptr) return call->reply(detailResponse(503, "Phone inventory is not available"));
  if (!s_.inventory->phone(phone_id)) return call->reply(detailResponse(404, "Phone not found"));
  auto parsed = parsePageQuery(call->query);
  if (auto* errors = std::get_if<FieldErrors>(&parsed)) return call->reply(validationResponse(*errors));
  const PageQuery& q = std::get<PageQuery>(parsed);
  s_.store.submit<store::ResetPage>(
      [phone_id, q](store::Db& db) { return store::PhoneRepository(db).listResets(phone_id, q.cursor, q.limit); },
      [this, call](Result<store::ResetPage> page) {
        onIo([call, page = std::move(page)] {
          if (!page) return call->reply(errorResponse(page.error()));
          json::array list;
          list.reserve(page->resets.size());
          for (const auto& r : page->resets) list.emplace_back(resetJson(r));
          json::value next = nullptr;
          if (page->next_before_seq) next = encodeCursor(*page->next_before_seq);
          call->reply(jsonResponse(200, json::object{{"resets", std::move(list)}, {"next_cursor", std::move(next)}}));
        });
      });
}

void ApiHandler::resetPhone(const CallPtr& call, const std::string& phone_id) {
  // The body is a cancel-shaped {reason, requested_by}; other fields are ignored.
  auto parsed = parseCancelRequest(call->request.body);
  if (auto* errors = std::get_if<FieldErrors>(&parsed)) return call->reply(validationResponse(*errors));
  if (s_.resets == nullptr) return call->reply(detailResponse(503, "Phone resets are not available"));
  auto& req = std::get<CancelRequest>(parsed);
  s_.resets->technicianReset(phone_id, std::move(req.reason), std::move(req.requested_by),
                             [this, call](Result<store::ResetRecord> r) {
                               onIo([call, r = std::move(r)] {
                                 if (!r) return call->reply(errorResponse(r.error()));
                                 call->reply(jsonResponse(202, resetJson(*r)));
                               });
                             });
}

}  // namespace phonefarm::api
