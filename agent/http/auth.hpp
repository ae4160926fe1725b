// Bearer-token authentication: parses the Authorization header and asks the
// current TokenSet. TokenRegistry holds the TokenSet that is in force and
// swaps it atomically on reload (SIGHUP), so requests never see a half-loaded
// set.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include "common/config/tokens.hpp"

namespace phonefarm::http {

// The token of "Bearer <token>" (scheme case-insensitive), or nullopt.
std::optional<std::string_view> bearerToken(std::string_view authorization);

class TokenRegistry {
 public:
  explicit TokenRegistry(TokenSet initial) : tokens_(std::make_shared<const TokenSet>(std::move(initial))) {}

  std::optional<Principal> authenticate(std::string_view authorization) const;
  void replace(TokenSet tokens);
  std::size_t size() const;

 private:
  std::shared_ptr<const TokenSet> current() const;
  mutable std::mutex mutex_;
  std::shared_ptr<const TokenSet> tokens_;
};

}  // namespace phonefarm::http
