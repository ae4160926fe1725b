// Escape-sequence removal for job output shown on a terminal; see
// terminal_filter.hpp. The states follow ECMA-48's shapes: ESC [ params
// final (CSI), ESC ] / P / X / ^ / _ ... terminated by BEL or ESC \ (control
// strings), ESC + one byte (everything else).
#include "agent/ctl/terminal_filter.hpp"

namespace phonefarm::ctl {

std::string TerminalFilter::filter(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    switch (state_) {
      case State::kText:
        if (c == 0x1b) {
          state_ = State::kEscape;
        } else if (c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f)) {
          out.push_back(ch);
        }
        break;
      case State::kEscape:
        if (c == '[') {
          state_ = State::kCsi;
        } else if (c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_') {
          state_ = State::kString;
        } else if (c >= 0x20 && c <= 0x2f) {
          // Intermediate bytes of an nF escape (ESC ( B): stay until the final byte.
        } else {
          state_ = State::kText;
        }
        break;
      case State::kCsi:
        // Parameter and intermediate bytes are 0x20-0x3f; 0x40-0x7e ends it. A
        // newline also ends a broken sequence so that one bad byte cannot eat the log.
        if ((c >= 0x40 && c <= 0x7e) || c == '\n') {
          if (c == '\n') out.push_back('\n');
          state_ = State::kText;
        }
        break;
      case State::kString:
        if (c == 0x07) {
          state_ = State::kText;
        } else if (c == '\n') {  // unterminated: do not swallow the rest of the log
          out.push_back('\n');
          state_ = State::kText;
        } else if (c == 0x1b) {
          state_ = State::kStringEscape;
        }
        break;
      case State::kStringEscape:
        state_ = c == '\\' ? State::kText : State::kString;
        break;
    }
  }
  return out;
}

}  // namespace phonefarm::ctl
