// TokenSet: the bearer tokens the agent accepts, loaded from the tokens file
// (one `NAME SCOPE SECRET` per line, `#` comments, SECRET plain or
// `sha256:<64 hex>`). Only SHA-256 digests are kept in memory; lookups hash
// the presented token and compare against every entry in constant time.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace phonefarm {

enum class Scope { kRead = 0, kOperate = 1, kSchedule = 2 };  // each includes the ones below it

std::string_view scopeName(Scope s);
std::optional<Scope> parseScope(std::string_view s);
// True when a token with `have` may do what needs `need`.
inline bool scopeAllows(Scope have, Scope need) { return static_cast<int>(have) >= static_cast<int>(need); }

class TokenFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using Sha256Digest = std::array<std::uint8_t, 32>;
Sha256Digest sha256(std::string_view data);

struct TokenEntry {
  std::string name;
  Scope scope;
  Sha256Digest digest;
};

struct Principal {
  std::string name;
  Scope scope;
};

class TokenSet {
 public:
  TokenSet() = default;
  explicit TokenSet(std::vector<TokenEntry> entries) : entries_(std::move(entries)) {}

  // Parses file text; `origin` names the file in errors ("tokens:3: unknown scope 'admin'").
  static TokenSet parse(std::string_view text, std::string_view origin);
  // Loads a file; refuses (TokenFileError) when group or others may read or
  // write it, or when it cannot be read or parsed.
  static TokenSet loadFile(const std::filesystem::path& path);

  // The principal for a presented bearer token, or nullopt. Constant time in
  // the token's content: every entry is compared, with no early exit.
  std::optional<Principal> authenticate(std::string_view token) const;

  std::size_t size() const { return entries_.size(); }

 private:
  std::vector<TokenEntry> entries_;
};

}  // namespace phonefarm
