// AgentClient: phonefarmctl's view of the agent's HTTP API — one request at a
// time with the bearer token, and the translation of every failure into the
// technician's words and the documented exit codes (the --help footer):
// 1 the agent refused, 2 usage, 3 unreachable.
#pragma once

#include <boost/json/value.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "agent/ctl/http_client.hpp"

namespace phonefarm::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitApi = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;

// Ends the command with an exit code and a message for stderr.
struct Exit {
  int code;
  std::string message;
};

// What a failed request means for the technician.
struct ErrorContext {
  std::string scope = "read";  // the scope the request needs
  std::string not_found;       // e.g. "process p-1 not found"; "" = the agent's detail
};

class AgentClient {
 public:
  AgentClient(Url url, std::string url_text, std::string token, std::chrono::milliseconds timeout,
              TlsClientOptions tls = {})
      : url_(std::move(url)),
        url_text_(std::move(url_text)),
        token_(std::move(token)),
        timeout_(timeout),
        tls_(std::move(tls)) {}

  // Performs the request; throws Exit{3} when the agent cannot be reached.
  HttpResponse call(std::string_view method, const std::string& target, const std::string& body = "") const;

  const std::string& urlText() const { return url_text_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  Url url_;
  std::string url_text_;
  std::string token_;
  std::chrono::milliseconds timeout_;
  TlsClientOptions tls_;  // https only
};

std::optional<boost::json::value> parseJson(std::string_view body);

// A non-2xx answer as an Exit{1} in the technician's words ("your token lacks
// the operate scope (403)", each 422 field on its own line, ...).
Exit apiError(const HttpResponse& r, const ErrorContext& ctx);

// Checks the status; returns the parsed JSON of a 2xx answer. With `echo_json`
// a refused request's body is printed to stdout first (--json).
boost::json::value expectOk(const HttpResponse& r, const ErrorContext& ctx, bool echo_json);

// The body as is, with a final newline.
void printRaw(const HttpResponse& r);

}  // namespace phonefarm::ctl
