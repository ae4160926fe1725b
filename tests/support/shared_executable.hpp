// sharedExecutable: a copy of a binary that users other than the test's can
// execute. The build tree may sit under a directory only its owner can enter
// (a home directory, a clone under `mktemp -d`), so a program a test starts
// as another user (the unprivileged agent, and through it the exec shim) must
// not be run from there.
#pragma once

#include <filesystem>

namespace phonefarm::testing {

// Copies `binary` (once per test process) into a directory made for the
// purpose under /tmp: the directory 0711, the copy 0755, /tmp itself
// traversable by everyone. Returns the copy's path; the directory is removed
// when the test process exits (kept with PHONEFARM_KEEP_TEST_DIRS). Throws
// std::system_error / std::filesystem::filesystem_error.
std::filesystem::path sharedExecutable(const std::filesystem::path& binary);

}  // namespace phonefarm::testing
