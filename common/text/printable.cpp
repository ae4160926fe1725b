// printable; see printable.hpp.
#include "common/text/printable.hpp"

#include <cstdio>

namespace phonefarm::text {

std::string printable(std::string_view text, const PrintableOptions& options) {
  if (options.join_lines) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '\t')) {
      text.remove_suffix(1);
    }
  }
  std::string out;
  if (options.quoted) out += '"';
  const std::size_t start = out.size();
  for (const char c : text) {
    if (out.size() - start >= options.max_bytes) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n' && options.join_lines) {
      out += " | ";
    } else if (u < 0x20 || u == 0x7f) {
      if (options.escape_as_hex) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", u);
        out += hex;
      } else {
        out += '?';
      }
    } else if ((u >= 0x80 && !options.keep_utf8) || (options.quoted && (c == '"' || c == '\\'))) {
      out += '?';
    } else {
      out += c;
    }
  }
  if (options.quoted) out += '"';
  return out;
}

}  // namespace phonefarm::text
