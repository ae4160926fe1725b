// Logging setup: spdlog to stderr. Under systemd (JOURNAL_STREAM set) each
// line starts with the syslog priority as `<N>` so journald records levels and
// adds its own timestamps; otherwise lines carry an ISO timestamp and level.
#pragma once

#include <string_view>

namespace phonefarm {

void setupLogging(std::string_view level = "info");

}  // namespace phonefarm
