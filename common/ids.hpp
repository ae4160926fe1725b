// Identifiers: docs/api.md ids are 1–128 chars of [A-Za-z0-9._:-]; ids the agent
// generates are random UUIDv4.
#pragma once

#include <string>
#include <string_view>

namespace phonefarm {

inline constexpr std::size_t kMaxIdLength = 128;
inline constexpr std::string_view kIdPattern = "^[A-Za-z0-9._:-]{1,128}$";

bool isValidId(std::string_view id);
std::string newUuidV4();

}  // namespace phonefarm
