// sharedExecutable: see shared_executable.hpp.
#include "tests/support/shared_executable.hpp"

#include <map>
#include <mutex>
#include <string>

#include "tests/support/temp_dir.hpp"

namespace phonefarm::testing {
namespace fs = std::filesystem;

fs::path sharedExecutable(const fs::path& binary) {
  static std::mutex mutex;
  static std::map<fs::path, fs::path> copies;
  std::lock_guard lock(mutex);
  static TempDir dir(DirAccess::kTraversableByOthers);  // made on first use, removed at exit
  if (const auto it = copies.find(binary); it != copies.end()) return it->second;
  // One sub-directory per copy keeps the file name (the agent logs it) and
  // lets two binaries of the same name coexist.
  const fs::path sub = dir.path() / std::to_string(copies.size());
  fs::create_directory(sub);
  fs::permissions(sub, fs::perms(0711), fs::perm_options::replace);
  const fs::path copy = sub / binary.filename();
  fs::copy_file(binary, copy, fs::copy_options::overwrite_existing);
  fs::permissions(copy, fs::perms(0755), fs::perm_options::replace);
  copies.emplace(binary, copy);
  return copy;
}

}  // namespace phonefarm::testing
