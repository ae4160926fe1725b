// GET /processes/{process_id}/items/{queue_item_id}/logs?stream=&offset=:
// the bytes of the item's latest execution's stdout.log or stderr.log from a
// byte offset, at most 1 MiB per answer, as text/plain (the bytes as the job
// wrote them). Headers say how to go on:
//   X-Phonefarm-Next-Offset   the offset of the next request
//   X-Phonefarm-Log-Size      the log's size when read
//   X-Phonefarm-Item-Status   the item's status
//   X-Phonefarm-More          "true" while more can come: bytes past the
//                             answer, or an item that has not ended
//   X-Phonefarm-Execution-Id  the execution read (absent: never ran)
// The store says which execution and in what state; the file is read on the
// I/O thread (one pread of at most 1 MiB) by readExecutionLog, which does
// not follow what the job may have put in its directory.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <limits>
#include <vector>

#include "agent/api/api_handler.hpp"
#include "agent/api/error_responses.hpp"
#include "agent/api/execution_log.hpp"
#include "common/ids.hpp"
#include "common/os/user_lookup.hpp"
#include "common/store/execution_repository.hpp"
#include "common/store/process_repository.hpp"

namespace phonefarm::api {
namespace {

struct LogsQuery {
  std::string stream = "stdout";
  std::uint64_t offset = 0;
};

// stream and offset; other parameters are ignored, as on GET /processes.
Validated<LogsQuery> parseLogsQuery(std::string_view query) {
  LogsQuery q;
  FieldErrors errors;
  forEachQueryParameter(query, errors, [&](const std::string& key, const std::string& value) {
    if (key == "stream") {
      if (value == "stdout" || value == "stderr") {
        q.stream = value;
      } else {
        addQueryError(errors, key, "Input should be 'stdout' or 'stderr'", "literal_error");
      }
    } else if (key == "offset") {
      if (auto n = parseQueryInteger(key, value, 0, std::numeric_limits<std::int64_t>::max(), errors)) {
        q.offset = static_cast<std::uint64_t>(*n);
      }
    }
  });
  if (!errors.empty()) return errors;
  return q;
}

// Who may own the log files: the agent (the exec shim opens them as the
// agent's user) and, for executions of agents before the control/work split,
// the work user.
std::vector<uid_t> logOwners(const std::string& run_as) {
  std::vector<uid_t> owners{::geteuid()};
  if (auto user = os::lookupUser(run_as); user && *user) owners.push_back((*user)->uid);
  return owners;
}

struct ItemRun {
  ItemStatus status = ItemStatus::kPending;
  std::optional<std::string> execution_id;
};

}  // namespace

void ApiHandler::getItemLogs(const CallPtr& call, std::string process_id, std::string queue_item_id) {
  if (!isValidId(process_id)) return call->reply(detailResponse(404, "Process not found"));
  if (!isValidId(queue_item_id)) return call->reply(detailResponse(404, "Queue item not found"));
  auto parsed = parseLogsQuery(call->query);
  if (auto* errors = std::get_if<FieldErrors>(&parsed)) return call->reply(validationResponse(*errors));
  const LogsQuery q = std::get<LogsQuery>(std::move(parsed));
  s_.store.submit<ItemRun>(
      [process_id = std::move(process_id), queue_item_id = std::move(queue_item_id)](store::Db& db) {
        auto p = store::ProcessRepository(db).loadProcess(process_id);
        if (!p) throw store::JobAbort{makeError(ErrorKind::kNotFound, "Process not found")};
        for (const auto& item : p->items) {
          if (item.queue_item_id != queue_item_id) continue;
          ItemRun run{item.status, std::nullopt};
          if (auto e = store::ExecutionRepository(db).latestExecutionOf(queue_item_id))
            run.execution_id = e->execution_id;
          return run;
        }
        throw store::JobAbort{makeError(ErrorKind::kNotFound, "Queue item not found")};
      },
      [this, call, q](Result<ItemRun> run) {
        onIo([this, call, q, run = std::move(run)] {
          if (!run) return call->reply(errorResponse(run.error()));
          LogChunk chunk;
          if (run->execution_id) {
            auto read = readExecutionLog(s_.config.state_dir, *run->execution_id, q.stream, q.offset,
                                         logOwners(s_.config.work.run_as));
            if (!read) {
              if (read.error().kind == ErrorKind::kConflict) {
                spdlog::warn("logs.refused execution_id={} reason=\"{}\"", *run->execution_id, read.error().message);
              }
              return call->reply(errorResponse(read.error()));
            }
            chunk = std::move(*read);
          }
          const std::uint64_t next = q.offset + chunk.bytes.size();
          const bool more = !isTerminal(run->status) || next < chunk.size;
          http::HttpResponse response;
          response.status = 200;
          response.content_type = "text/plain; charset=utf-8";
          response.headers.emplace_back("X-Phonefarm-Next-Offset", std::to_string(next));
          response.headers.emplace_back("X-Phonefarm-Log-Size", std::to_string(chunk.size));
          response.headers.emplace_back("X-Phonefarm-Item-Status", std::string(toString(run->status)));
          response.headers.emplace_back("X-Phonefarm-More", more ? "true" : "false");
          if (run->execution_id) response.headers.emplace_back("X-Phonefarm-Execution-Id", *run->execution_id);
          response.headers.emplace_back("Cache-Control", "no-store");
          response.body = std::move(chunk.bytes);
          call->reply(std::move(response));
        });
      });
}

}  // namespace phonefarm::api
