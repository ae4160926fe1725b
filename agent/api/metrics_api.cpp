// GET /metrics: the Prometheus text exposition (version 0.0.4) of the
// metrics the handler records itself (requests, cancels) and of those the
// daemon pulls at scrape time through ApiServices::collect (executor, store,
// phones, resets, connections). Runs on the I/O thread, where the executor's
// and the inventory's state may be read.
#include "agent/api/api_handler.hpp"
#include "agent/api/error_responses.hpp"

namespace phonefarm::api {

void ApiHandler::getMetrics(const CallPtr& call) {
  std::string body = metrics_.render();
  if (s_.collect) {
    metrics::Registry pulled;  // fresh each scrape: series that went away (a phone state) are not kept
    s_.collect(pulled);
    body += pulled.render();
  }
  http::HttpResponse response;
  response.status = 200;
  response.content_type = std::string(metrics::kContentType);
  response.body = std::move(body);
  call->reply(std::move(response));
}

}  // namespace phonefarm::api
