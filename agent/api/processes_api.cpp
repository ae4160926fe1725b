// POST /processes (submit), GET /processes (list, newest first, cursor
// paging) and GET /processes/{id}.
#include <spdlog/spdlog.h>

#include <boost/json/object.hpp>

#include "agent/api/api_handler.hpp"
#include "agent/api/error_responses.hpp"
#include "agent/exec/command_policy.hpp"
#include "agent/exec/env_policy.hpp"
#include "agent/phone/inventory.hpp"
#include "common/ids.hpp"
#include "common/model/process_json.hpp"
#include "common/store/process_repository.hpp"

namespace phonefarm::api {
namespace {

Process buildProcess(SubmitRequest&& req, WallMs now) {
  Process p;
  p.process_id = req.process_id ? std::move(*req.process_id) : newUuidV4();
  p.status = ProcessStatus::kQueued;
  p.phone_id = std::move(req.phone_id);
  p.account_id = std::move(req.account_id);
  p.capability_request_id = req.capability_request_id ? std::move(*req.capability_request_id) : p.process_id;
  p.requested_by = std::move(req.requested_by);
  p.created_at = now;
  p.updated_at = now;
  int position = 0;
  for (auto& spec : req.items) {
    QueueItem item;
    item.queue_item_id = spec.queue_item_id ? std::move(*spec.queue_item_id) : newUuidV4();
    item.position = position++;
    item.command = std::move(spec.command);
    item.env = std::move(spec.env);
    item.timeout_seconds = spec.timeout_seconds;
    item.stop_signal = std::move(spec.stop_signal);
    p.items.push_back(std::move(item));
  }
  return p;
}

}  // namespace

void ApiHandler::postProcesses(const CallPtr& call) {
  // New work needs disk (logs, the store); what is running can still be
  // cancelled and read when there is none left.
  if (s_.submit_refusal) {
    if (auto why = s_.submit_refusal()) {
      spdlog::warn("process.refused reason=disk_low");
      return call->reply(detailResponse(503, *why));
    }
  }
  // The command allow-list is checked here, on the I/O thread (a few realpath calls), before any store job:
  // a refused item makes the whole request a 422 that changes nothing.
  auto parsed = parseSubmitRequest(
      call->request.body, [this](std::string_view id) { return s_.config.findPhone(id) != nullptr; },
      [this](const std::string& program) {
        return exec::checkCommandAllowed(program, s_.config.work.allowed_command_prefixes);
      },
      [this](std::string_view name) { return exec::envNameRefusal(name, s_.config.work.allowed_env); });
  if (auto* errors = std::get_if<FieldErrors>(&parsed)) return call->reply(validationResponse(*errors));
  Process process = buildProcess(std::get<SubmitRequest>(std::move(parsed)), s_.clock.wallNowMs());
  s_.store.submit<Process>(
      [process = std::move(process)](store::Db& db) {
        store::ProcessRepository repo(db);
        if (repo.processExists(process.process_id)) {
          throw store::JobAbort{makeError(ErrorKind::kConflict, "Process already exists")};
        }
        std::vector<std::string> ids;
        for (const auto& item : process.items) ids.push_back(item.queue_item_id);
        if (!repo.existingQueueItems(ids).empty()) {
          throw store::JobAbort{makeError(ErrorKind::kConflict, "Queue item already exists")};
        }
        repo.insertProcess(process);
        return process;
      },
      [this, call](Result<Process> stored) {
        onIo([this, call, stored = std::move(stored)] {
          if (!stored) return call->reply(errorResponse(stored.error()));
          spdlog::info("process.submitted process_id={} phone_id={} items={}", stored->process_id, stored->phone_id,
                       stored->items.size());
          if (s_.phone_changed) s_.phone_changed(stored->phone_id);
          auto response = jsonResponse(201, processJson(*stored));
          response.headers.emplace_back("Location", "/processes/" + stored->process_id);
          call->reply(std::move(response));
        });
      });
}

boost::json::object ApiHandler::processJson(const Process& process, const std::vector<CancelAuditEntry>* audit) const {
  boost::json::object o = toJson(process, audit);
  boost::json::value waiting = nullptr;
  if (process.status == ProcessStatus::kQueued && s_.inventory != nullptr) {
    // Only what keeps the phone from taking work counts; a phone that could
    // take it has the process simply behind other work (null).
    if (auto phone = s_.inventory->phone(process.phone_id)) {
      const std::string& state = phone->reported_state;
      if (phone->resetting) {
        waiting = "phone_resetting";
      } else if (phone->needs_attention) {
        waiting = "phone_needs_attention";
      } else if (s_.config.work.wait_for_device && state != phone::kStateDevice) {
        waiting = state == phone::kStateAbsent         ? "phone_absent"
                  : state == phone::kStateUnauthorized ? "phone_unauthorized"
                                                       : "phone_offline";
      }
    }
  }
  o["waiting_for"] = std::move(waiting);
  return o;
}

void ApiHandler::listProcesses(const CallPtr& call) {
  auto parsed = parseListQuery(call->query);
  if (auto* errors = std::get_if<FieldErrors>(&parsed)) return call->reply(validationResponse(*errors));
  const ListQuery& q = std::get<ListQuery>(parsed);
  store::ProcessFilter filter{q.status, q.phone_id, q.cursor, q.limit};
  s_.store.submit<store::ProcessPage>(
      [filter](store::Db& db) { return store::ProcessRepository(db).listProcesses(filter); },
      [this, call](Result<store::ProcessPage> page) {
        onIo([this, call, page = std::move(page)] {
          if (!page) return call->reply(errorResponse(page.error()));
          boost::json::array list;
          list.reserve(page->processes.size());
          for (const auto& p : page->processes) list.emplace_back(processJson(p));
          boost::json::value next = nullptr;
          if (page->next_before_seq) next = encodeCursor(*page->next_before_seq);
          call->reply(jsonResponse(200, boost::json::object{{"processes", std::move(list)}, {"next_cursor", next}}));
        });
      });
}

void ApiHandler::getProcess(const CallPtr& call, std::string process_id) {
  if (!isValidId(process_id)) return call->reply(detailResponse(404, "Process not found"));
  struct Loaded {
    Process process;
    std::vector<CancelAuditEntry> audit;
  };
  s_.store.submit<Loaded>(
      [process_id = std::move(process_id)](store::Db& db) {
        store::ProcessRepository repo(db);
        auto p = repo.loadProcess(process_id);
        if (!p) throw store::JobAbort{makeError(ErrorKind::kNotFound, "Process not found")};
        return Loaded{std::move(*p), repo.loadAudit(process_id)};
      },
      [this, call](Result<Loaded> loaded) {
        onIo([this, call, loaded = std::move(loaded)] {
          if (!loaded) return call->reply(errorResponse(loaded.error()));
          call->reply(jsonResponse(200, processJson(loaded->process, &loaded->audit)));
        });
      });
}

}  // namespace phonefarm::api
