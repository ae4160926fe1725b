// Byte sizes as agent.toml writes them ([work] memory_max): a whole number of
// bytes with an optional binary suffix, as systemd's MemoryMax= reads them
// ("4G" = 4 * 1024^3). Pure; the config loader turns errors into ConfigError.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace phonefarm {

// "<digits>[K|M|G|T]": digits only (no sign, space, fraction or exponent), at
// most one suffix letter, upper case. Either the byte count or why not.
std::variant<std::uint64_t, std::string> parseByteSize(std::string_view text);

}  // namespace phonefarm
