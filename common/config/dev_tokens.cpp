// Random dev tokens from the OpenSSL CSPRNG, written with O_EXCL.
#include "common/config/dev_tokens.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

namespace phonefarm {
namespace {

std::string randomToken() {
  unsigned char bytes[24];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("cannot generate a random token");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "pf_";
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace

bool ensureDevTokensFile(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    throw std::system_error(errno, std::generic_category(), "create " + path.string());
  }
  std::string text = "# phonefarm-agent --dev tokens: NAME SCOPE SECRET\n";
  for (const char* scope : {"read", "operate", "schedule"}) {
    text += std::string("dev-") + scope + " " + scope + " " + randomToken() + "\n";
  }
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + path.string());
  return true;
}

}  // namespace phonefarm
