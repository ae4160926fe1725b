// TempDir and writeFile: see temp_dir.hpp.
#include "tests/support/temp_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <system_error>

namespace phonefarm::testing {

TempDir::TempDir(DirAccess access) {
  std::string pattern = "/tmp/phonefarm-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
  path_ = pattern;
  if (access == DirAccess::kTraversableByOthers && ::chmod(path_.c_str(), 0711) != 0) {
    throw std::system_error(errno, std::generic_category(), "chmod " + path_.string());
  }
}

TempDir::~TempDir() {
  if (std::getenv("PHONEFARM_KEEP_TEST_DIRS") != nullptr) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void writeFile(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path.string());
  auto fail = [&](const char* what) {
    const int saved = errno;
    ::close(fd);
    throw std::system_error(saved, std::generic_category(), std::string(what) + " " + path.string());
  };
  // open() applies the umask and leaves an existing file's mode alone.
  if (::fchmod(fd, mode) != 0) fail("fchmod");
  while (!content.empty()) {
    const auto n = ::write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write");
    content.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::close(fd) != 0) throw std::system_error(errno, std::generic_category(), "close " + path.string());
}

}  // namespace phonefarm::testing
