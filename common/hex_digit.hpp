// hexDigitValue: one hexadecimal digit, either case. Used where hex text is
// decoded by hand: the sha256 secrets of the tokens file and the %XX escapes
// of query strings.
#pragma once

namespace phonefarm {

// 0-15, or -1 when `c` is not a hex digit.
constexpr int hexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace phonefarm
