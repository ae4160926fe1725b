// Internal to the HTTP server: how a request's Responder reaches its
// connection. The handler may answer later and from another thread; the
// answer is posted to the io_context and delivered to the session if it
// still exists. Answers exactly once: a Responder dropped unanswered sends a
// 500 instead of leaving the client hanging.
#pragma once

#include <atomic>
#include <memory>
#include <string_view>

#include "agent/http/http_message.hpp"
#include "agent/http/http_session.hpp"

namespace phonefarm::http::detail {

// {"detail": "..."} with the status: the server's own error answers.
HttpResponse detailResponse(int status, std::string_view detail);

// What a Responder delivers to: the session, whatever its stream type.
class ResponseTarget {
 public:
  // Runs on the io_context thread.
  virtual void onResponse(HttpResponse response) = 0;

 protected:
  ~ResponseTarget() = default;
};

// Shared by every copy of one request's Responder. Answers exactly once; if
// the handler loses the Responder without answering, the client gets a 500
// instead of a connection that hangs until shutdown.
class ResponderState {
 public:
  ResponderState(std::weak_ptr<ResponseTarget> session, std::shared_ptr<PostGate> gate)
      : session_(std::move(session)), gate_(std::move(gate)) {}
  ResponderState(const ResponderState&) = delete;
  ResponderState& operator=(const ResponderState&) = delete;

  ~ResponderState();

  void answer(HttpResponse response);

  // For the server's own fallback (handler threw): silent if already answered.
  void answerIfUnanswered(HttpResponse response);

 private:
  bool deliver(HttpResponse response);

  std::weak_ptr<ResponseTarget> session_;
  std::shared_ptr<PostGate> gate_;
  std::atomic<bool> answered_{false};
};

}  // namespace phonefarm::http::detail
