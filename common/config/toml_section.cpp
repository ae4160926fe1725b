// The generic TOML section walker; see toml_section.hpp.
#include "common/config/toml_section.hpp"

#include <variant>

#include "common/config/byte_size.hpp"
#include "common/text/printable.hpp"

namespace phonefarm {

std::string printable(std::string_view s) {
  // Keys and values may be quoted TOML strings holding anything; escape
  // control characters so that an error stays one readable log line.
  return text::printable(s, {.max_bytes = text::kUnlimited.max_bytes, .escape_as_hex = true, .keep_utf8 = true});
}

[[noreturn]] void failAt(std::string_view origin, const toml::source_region& where, const std::string& message) {
  std::string text(origin);
  if (where.begin.line != 0) text += ":" + std::to_string(where.begin.line);
  throw ConfigError(text + ": " + message);
}

std::string TomlSection::name(std::string_view key) const {
  return printable(path_.empty() ? std::string(key) : path_ + "." + std::string(key));
}

void TomlSection::fail(const toml::node& at, std::string_view key, const std::string& what) const {
  failAt(origin_, at.source(), "'" + name(key) + "' " + what);
}

const toml::node* TomlSection::find(std::string_view key) {
  consumed_.emplace(key);
  return table_.get(key);
}

std::optional<std::int64_t> TomlSection::integer(std::string_view key, std::int64_t min, std::int64_t max) {
  const toml::node* node = find(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_integer();
  if (value == nullptr) fail(*node, key, "must be an integer");
  const std::int64_t v = value->get();
  if (v < min || v > max) {
    fail(*node, key,
         "must be from " + std::to_string(min) + " to " + std::to_string(max) + " (got " + std::to_string(v) + ")");
  }
  return v;
}

std::optional<std::uint64_t> TomlSection::byteSize(std::string_view key, std::string_view example) {
  const toml::node* node = find(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* number = node->as_integer()) {
    if (number->get() < 0) fail(*node, key, "must not be negative");
    return static_cast<std::uint64_t>(number->get());
  }
  const auto* text = node->as_string();
  if (text == nullptr) {
    fail(*node, key, "must be a string such as \"" + std::string(example) + "\" or a number of bytes");
  }
  auto parsed = parseByteSize(text->get());
  if (const auto* why = std::get_if<std::string>(&parsed))
    fail(*node, key, "\"" + printable(text->get()) + "\" " + *why);
  return std::get<std::uint64_t>(parsed);
}

void TomlSection::seconds(std::string_view key, std::int64_t max, std::chrono::seconds& out) {
  if (auto v = integer(key, 1, max)) out = std::chrono::seconds(*v);
}

void TomlSection::boolean(std::string_view key, bool& out) {
  const toml::node* node = find(key);
  if (node == nullptr) return;
  const auto* value = node->as_boolean();
  if (value == nullptr) fail(*node, key, "must be a boolean (true or false)");
  out = value->get();
}

std::optional<std::string> TomlSection::string(std::string_view key) {
  const toml::node* node = find(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_string();
  if (value == nullptr) fail(*node, key, "must be a string");
  return value->get();
}

std::optional<std::string> TomlSection::path(std::string_view key, bool absolute, bool allow_empty) {
  auto v = string(key);
  if (v) checkPath(*find(key), key, *v, absolute, allow_empty);
  return v;
}

void TomlSection::checkPath(const toml::node& at, std::string_view key, std::string_view v, bool absolute,
                            bool allow_empty) const {
  if (v.empty()) {
    if (allow_empty) return;
    fail(at, key, "must not be empty");
  }
  if (v.find('\0') != std::string_view::npos) fail(at, key, "must not contain NUL characters");
  if (absolute && !v.starts_with('/')) fail(at, key, "must be an absolute path (got \"" + printable(v) + "\")");
}

const toml::table* TomlSection::table(std::string_view key) {
  const toml::node* node = find(key);
  if (node == nullptr) return nullptr;
  const auto* value = node->as_table();
  if (value == nullptr) fail(*node, key, "must be a table");
  return value;
}

const toml::array* TomlSection::array(std::string_view key, std::string_view of_what) {
  const toml::node* node = find(key);
  if (node == nullptr) return nullptr;
  const auto* value = node->as_array();
  if (value == nullptr) fail(*node, key, "must be an array of " + std::string(of_what));
  return value;
}

void TomlSection::rejectUnknown() const {
  const toml::key* first = nullptr;
  for (auto&& [key, node] : table_) {
    if (consumed_.contains(key.str())) continue;
    if (first == nullptr || key.source().begin.line < first->source().begin.line) first = &key;
  }
  if (first != nullptr) failAt(origin_, first->source(), "unknown key '" + name(first->str()) + "'");
}

}  // namespace phonefarm
