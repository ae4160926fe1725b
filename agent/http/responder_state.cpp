// See responder_state.hpp.
#include "agent/http/responder_state.hpp"

#include <spdlog/spdlog.h>

namespace phonefarm::http::detail {

HttpResponse detailResponse(int status, std::string_view detail) {
  HttpResponse res;
  res.status = status;
  res.body = std::string(R"({"detail":")") + std::string(detail) + "\"}";
  return res;
}

ResponderState::~ResponderState() {
  if (answered_.exchange(true)) return;
  try {
    if (deliver(detailResponse(500, "Internal error"))) spdlog::error("http.responder.dropped");
  } catch (...) {
    // Out of memory: a destructor must not throw; the connection closes unanswered.
  }
}

void ResponderState::answer(HttpResponse response) {
  if (answered_.exchange(true)) {
    spdlog::error("http.responder.answered_twice status={}", response.status);
    return;
  }
  deliver(std::move(response));
}

void ResponderState::answerIfUnanswered(HttpResponse response) {
  if (!answered_.exchange(true)) deliver(std::move(response));
}

bool ResponderState::deliver(HttpResponse response) {
  return gate_->post([session = session_, response = std::move(response)]() mutable {
    if (auto s = session.lock()) s->onResponse(std::move(response));
  });
}

}  // namespace phonefarm::http::detail
