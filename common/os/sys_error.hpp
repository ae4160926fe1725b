// errno helpers shared by every system-call wrapper: sysError turns a failed
// call's errno into an Error that keeps the call's context; errnoText is the
// message alone.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>

#include "common/result.hpp"

namespace phonefarm::os {

// strerror(err), thread-safe.
inline std::string errnoText(int err = errno) { return std::system_category().message(err); }

// "<context>: <strerror>"; the errno picks the kind: missing -> kNotFound,
// exists/busy -> kConflict, permission/read-only -> kUnavailable, else kInternal.
inline Error sysError(std::string_view context, int err = errno) {
  ErrorKind kind = ErrorKind::kInternal;
  if (err == ENOENT || err == ESRCH) kind = ErrorKind::kNotFound;
  if (err == EEXIST || err == EBUSY) kind = ErrorKind::kConflict;
  if (err == EACCES || err == EPERM || err == EROFS) kind = ErrorKind::kUnavailable;
  return makeError(kind, std::string(context) + ": " + errnoText(err));
}

// The same with the kind chosen by the caller.
inline Error sysError(ErrorKind kind, std::string_view context, int err = errno) {
  return makeError(kind, std::string(context) + ": " + errnoText(err));
}

}  // namespace phonefarm::os
