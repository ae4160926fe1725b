// TempDir and writeFile: scratch state for integration tests (config files,
// token files with exact modes, the daemon's state_dir and logs).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

namespace phonefarm::testing {

// Who may enter a TempDir.
enum class DirAccess {
  kOwnerOnly,            // 0700, as mkdtemp makes it
  kTraversableByOthers,  // 0711: for what work running as another user must reach
};

// A fresh directory under /tmp, removed recursively on destruction unless
// PHONEFARM_KEEP_TEST_DIRS is set in the environment (to inspect a failure).
// Whatever a program running as another user must reach (state dirs, job
// scripts, copies of binaries) lives in one made kTraversableByOthers: /tmp
// lets anyone through, while the build tree may sit under a directory only
// its owner can enter.
class TempDir {
 public:
  explicit TempDir(DirAccess access = DirAccess::kOwnerOnly);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::filesystem::path& child) const { return path_ / child; }

 private:
  std::filesystem::path path_;
};

// Creates or truncates `path` with exactly `mode` (the umask does not apply:
// tests of the tokens file's permission check depend on it). Throws
// std::system_error.
void writeFile(const std::filesystem::path& path, std::string_view content, mode_t mode = 0644);

}  // namespace phonefarm::testing
