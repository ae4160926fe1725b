// printable: outside text (adb server answers, a child's output, USB strings,
// TOML keys and values) made safe for one error message or log line. Every
// component that echoes such text uses this, with the options that fit what
// the text is; the defaults suit short machine-made strings.
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <string_view>

namespace phonefarm::text {

struct PrintableOptions {
  // More output than this is cut and ends in "..."; max() for no limit.
  std::size_t max_bytes = 512;
  // A control byte (< 0x20, 0x7f) becomes \xNN instead of '?'.
  bool escape_as_hex = false;
  // Bytes >= 0x80 pass (UTF-8 text such as TOML keys) instead of becoming '?'.
  bool keep_utf8 = false;
  // Multi-line text (a server's message, a child's output): trailing
  // whitespace dropped and each newline shown as " | ".
  bool join_lines = false;
  // Wrapped in double quotes, with '"' and '\' inside shown as '?'.
  bool quoted = false;
};

inline constexpr PrintableOptions kUnlimited{.max_bytes = std::numeric_limits<std::size_t>::max()};

std::string printable(std::string_view text, const PrintableOptions& options = {});

}  // namespace phonefarm::text
