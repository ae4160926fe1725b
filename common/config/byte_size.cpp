// Implementation of byte_size.hpp.
#include "common/config/byte_size.hpp"

#include <charconv>
#include <limits>
#include <system_error>

namespace phonefarm {

std::variant<std::uint64_t, std::string> parseByteSize(std::string_view text) {
  constexpr std::string_view kForm = "a byte count with an optional K, M, G or T suffix (e.g. \"512M\", \"4G\")";
  if (text.empty()) return std::string("is empty; expected ") + std::string(kForm);
  unsigned shift = 0;
  switch (text.back()) {
    case 'K':
      shift = 10;
      break;
    case 'M':
      shift = 20;
      break;
    case 'G':
      shift = 30;
      break;
    case 'T':
      shift = 40;
      break;
    default:
      break;
  }
  const std::string_view digits = shift == 0 ? text : text.substr(0, text.size() - 1);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
    return "is not " + std::string(kForm);
  }
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc{} || end != digits.data() + digits.size() ||
      value > (std::numeric_limits<std::uint64_t>::max() >> (shift + 1))) {
    return std::string("is too large");
  }
  return value << shift;
}

}  // namespace phonefarm
