// GET /whoami (any valid token): the name and scope of the token the request
// carries, from the tokens file, so a client (the rack page) knows what it
// may offer. Never the token itself; a wrong or missing token is refused
// before this runs (401, as on every other route).
#include <boost/json/object.hpp>

#include "agent/api/api_handler.hpp"
#include "agent/api/error_responses.hpp"

namespace phonefarm::api {

void ApiHandler::getWhoami(const CallPtr& call) {
  // The route needs a token: admission set both or refused the request.
  if (!call->scope) return call->reply(unauthorizedResponse());
  call->reply(jsonResponse(
      200, boost::json::object{{"name", call->principal}, {"scope", std::string(scopeName(*call->scope))}}));
}

}  // namespace phonefarm::api
