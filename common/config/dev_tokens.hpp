// Development tokens: `phonefarm-agent --dev` creates a tokens file with one
// random token per scope (dev-read, dev-operate, dev-schedule), mode 0600,
// when none exists yet, so the quick start needs no manual step.
#pragma once

#include <filesystem>

namespace phonefarm {

// Creates `path` (mode 0600) unless it exists; returns true when it created it.
bool ensureDevTokensFile(const std::filesystem::path& path);

}  // namespace phonefarm
