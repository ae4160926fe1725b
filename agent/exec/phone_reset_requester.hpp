// PhoneResetRequester: the seam through which the executor asks for a phone's
// ADB/USB session to be reset after a forced kill (hard cancel, escalation,
// timeout). The phone layer implements it (phone::ResetService); exec/ only
// knows this interface, so phone/ need not include the executor.
#pragma once

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace phonefarm::exec {

// Returns the reset record for the cancel response ({"reset_id","status"}),
// or nullopt when no reset was started.
class PhoneResetRequester {
 public:
  virtual ~PhoneResetRequester() = default;
  virtual std::optional<boost::json::object> requestReset(const std::string& phone_id, const std::string& trigger) = 0;
};

}  // namespace phonefarm::exec
