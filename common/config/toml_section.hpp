// TomlSection: the generic walker under AgentConfig's loader (config.cpp).
// One TOML table under a dotted path ("http", "phones[2]"): typed readers
// that record the keys they consumed, so rejectUnknown() can reject whatever
// is left over with its full dotted name and line. Every error is a
// ConfigError "<origin>:<line>: '<key>' <what>". Nothing here knows any key of
// agent.toml.
#pragma once

#include <toml++/toml.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "common/config/config.hpp"

namespace phonefarm {

// Keys and values may be quoted TOML strings holding anything; escape control
// characters so that an error stays one readable log line.
std::string printable(std::string_view s);

// Throws ConfigError "<origin>:<line>: <message>" (without the line when the
// region has none).
[[noreturn]] void failAt(std::string_view origin, const toml::source_region& where, const std::string& message);

// Readers leave the target alone (or return nullopt) when the key is absent,
// so the struct's default stays in place; rejectUnknown() then flags every
// key not read.
class TomlSection {
 public:
  TomlSection(std::string_view origin, const toml::table& table, std::string path)
      : origin_(origin), table_(table), path_(std::move(path)) {}

  // The key's full dotted name, printable.
  std::string name(std::string_view key) const;

  [[noreturn]] void fail(const toml::node& at, std::string_view key, const std::string& what) const;

  // The node under `key` (nullptr when absent); marks the key as known.
  const toml::node* find(std::string_view key);

  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
  // A number of bytes: a non-negative integer, or a size string such as
  // "64M" (byte_size.hpp: digits with an optional K, M, G or T suffix).
  // `example` is the size the type error suggests. Ranges are the caller's.
  std::optional<std::uint64_t> byteSize(std::string_view key, std::string_view example);
  // A whole number of seconds from 1 to `max`.
  void seconds(std::string_view key, std::int64_t max, std::chrono::seconds& out);
  void boolean(std::string_view key, bool& out);
  std::optional<std::string> string(std::string_view key);

  // A filesystem path: non-empty (unless allowed), no NUL, and absolute when
  // the daemon would otherwise resolve it against an unpredictable cwd.
  std::optional<std::string> path(std::string_view key, bool absolute, bool allow_empty);
  void checkPath(const toml::node& at, std::string_view key, std::string_view v, bool absolute, bool allow_empty) const;

  const toml::table* table(std::string_view key);
  const toml::array* array(std::string_view key, std::string_view of_what);

  // Throws for the earliest (by line) key that no reader asked for.
  void rejectUnknown() const;

  std::string_view origin() const { return origin_; }
  const toml::table& node() const { return table_; }

 private:
  std::string_view origin_;
  const toml::table& table_;
  std::string path_;
  std::set<std::string, std::less<>> consumed_;
};

}  // namespace phonefarm
