// TempDir and writeFile: scratch state for integration tests (config files,
// token files with exact modes, the daemon's state_dir and logs).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

namespace phonefarm::testing {

// A fresh directory under /tmp, removed recursively on destruction unless
// PHONEFARM_KEEP_TEST_DIRS is set in the environment (to inspect a failure).
class TempDir {
 public:
  TempDir();
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
