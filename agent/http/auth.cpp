// Authorization header parsing and the reloadable token registry.
#include "agent/http/auth.hpp"

#include <strings.h>

namespace phonefarm::http {

std::optional<std::string_view> bearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) return std::nullopt;
  if (::strncasecmp(authorization.data(), kScheme.data(), kScheme.size()) != 0) return std::nullopt;
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  if (token.empty() || token.find_first_of(" \t") != std::string_view::npos) return std::nullopt;
  return token;
}

std::optional<Principal> TokenRegistry::authenticate(std::string_view authorization) const {
  auto token = bearerToken(authorization);
  if (!token) return std::nullopt;
  return current()->authenticate(*token);
}

void TokenRegistry::replace(TokenSet tokens) {
  auto next = std::make_shared<const TokenSet>(std::move(tokens));
  std::lock_guard lock(mutex_);
  tokens_ = std::move(next);
}

std::size_t TokenRegistry::size() const { return current()->size(); }

std::shared_ptr<const TokenSet> TokenRegistry::current() const {
  std::lock_guard lock(mutex_);
  return tokens_;
}

}  // namespace phonefarm::http
