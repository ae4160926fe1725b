// sharedExecutable: see shared_executable.hpp.
#include "tests/support/shared_executable.hpp"

#include <cerrno>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <system_error>

namespace phonefarm::testing {
namespace {

namespace fs = std::filesystem;

class SharedDir {
 public:
  SharedDir() {
    std::string pattern = "/tmp/phonefarm-bin-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = pattern;
    fs::permissions(path_, fs::perms(0711), fs::perm_options::replace);
  }
  ~SharedDir() {
    if (std::getenv("PHONEFARM_KEEP_TEST_DIRS") != nullptr) return;
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

}  // namespace

fs::path sharedExecutable(const fs::path& binary) {
  static std::mutex mutex;
  static std::map<fs::path, fs::path> copies;
  std::lock_guard lock(mutex);
  static SharedDir dir;  // made on first use, removed at exit
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
