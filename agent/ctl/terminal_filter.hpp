// TerminalFilter: what `phonefarmctl logs` does to a job's output before it
// reaches a terminal. A job's bytes are untrusted: escape sequences could
// retitle the window, move the cursor over earlier lines, or on some
// terminals answer back into the input. On a terminal, ESC sequences (CSI,
// OSC/DCS/APC/PM/SOS strings, two-byte escapes) and C0 controls other than
// \n and \t are dropped, and so are \r and DEL; everything else (UTF-8
// included) passes. Stateful, so a sequence split across two reads is still
// removed. Piped output is never filtered: it is the bytes as written.
#pragma once

#include <string>
#include <string_view>

namespace phonefarm::ctl {

class TerminalFilter {
 public:
  // Returns the part of `bytes` that may be shown.
  std::string filter(std::string_view bytes);

 private:
  enum class State { kText, kEscape, kCsi, kString, kStringEscape };
  State state_ = State::kText;
};

}  // namespace phonefarm::ctl
