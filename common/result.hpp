// Result<T>: the value of an I/O or request-path operation, or an Error that
// says which kind of failure it was and carries its context. Exceptions are for
// start-up and config (docs/design.md, "Errors"); everything on the request path returns
// one of these.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace phonefarm {

enum class ErrorKind {
  kInvalid,      // caller's input is wrong (maps to 4xx)
  kNotFound,     // the thing does not exist (404)
  kConflict,     // it exists already (409)
  kUnavailable,  // store full, locked or closed (503)
  kInternal,     // a bug or an unexpected system failure (500)
};

struct Error {
  ErrorKind kind = ErrorKind::kInternal;
  std::string message;
};

inline Error makeError(ErrorKind kind, std::string message) { return Error{kind, std::move(message)}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// For operations that return nothing but may fail.
struct Unit {};
using Status = Result<Unit>;
inline Status okStatus() { return Unit{}; }

}  // namespace phonefarm
