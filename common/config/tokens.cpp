// Parses the tokens file into SHA-256 digests and authenticates bearer
// tokens against them. Secrets never leave this file: error messages name the
// origin and line but never echo a field that could be (part of) a secret, and
// lookups compare every entry in constant time so response timing says nothing
// about how close a guess was.
#include "common/config/tokens.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "common/hex_digit.hpp"

namespace phonefarm {
namespace {

constexpr std::size_t kMaxNameLength = 64;
constexpr std::size_t kMinPlainSecret = 16;
constexpr std::size_t kMaxPlainSecret = 512;
constexpr std::string_view kSha256Prefix = "sha256:";

constexpr std::pair<Scope, std::string_view> kScopeNames[] = {
    {Scope::kRead, "read"},
    {Scope::kOperate, "operate"},
    {Scope::kSchedule, "schedule"},
};

bool isBlank(char c) { return c == ' ' || c == '\t'; }

bool isNameChar(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

std::vector<std::string_view> splitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && isBlank(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !isBlank(line[i])) ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

// The digest a SECRET field stands for, or an error message (which must not
// contain the field itself).
std::optional<Sha256Digest> secretDigest(std::string_view secret, std::string& why) {
  if (secret.starts_with(kSha256Prefix)) {
    const std::string_view hex = secret.substr(kSha256Prefix.size());
    Sha256Digest digest{};
    if (hex.size() != digest.size() * 2) {
      why = "a sha256: secret must have exactly 64 hex digits";
      return std::nullopt;
    }
    for (std::size_t i = 0; i < digest.size(); ++i) {
      const int hi = hexDigitValue(hex[2 * i]);
      const int lo = hexDigitValue(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        why = "a sha256: secret must have exactly 64 hex digits";
        return std::nullopt;
      }
      digest[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return digest;
  }
  if (secret.size() < kMinPlainSecret || secret.size() > kMaxPlainSecret) {
    why = "a plain secret must be 16 to 512 characters long";
    return std::nullopt;
  }
  if (!std::all_of(secret.begin(), secret.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; })) {
    why = "a plain secret must be printable ASCII without spaces";
    return std::nullopt;
  }
  return sha256(secret);
}

// A SCOPE field may really be a secret when columns were swapped; echo it only
// when it is too short to be one.
std::string describeScope(std::string_view field) {
  const bool echo = field.size() < kMinPlainSecret && std::all_of(field.begin(), field.end(), isNameChar);
  return echo ? "unknown scope '" + std::string(field) + "'" : std::string("unknown scope");
}

}  // namespace

std::string_view scopeName(Scope s) {
  for (const auto& [scope, name] : kScopeNames) {
    if (scope == s) return name;
  }
  return "unknown";
}

std::optional<Scope> parseScope(std::string_view s) {
  for (const auto& [scope, name] : kScopeNames) {
    if (name == s) return scope;
  }
  return std::nullopt;
}

Sha256Digest sha256(std::string_view data) {
  Sha256Digest digest{};
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    throw std::runtime_error("EVP_Digest(sha256) failed");
  }
  return digest;
}

TokenSet TokenSet::parse(std::string_view text, std::string_view origin) {
  std::vector<TokenEntry> entries;
  std::set<std::string, std::less<>> names;
  std::size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const auto newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);  // files edited on Windows

    const auto fail = [&](const std::string& why) {
      throw TokenFileError(std::string(origin) + ":" + std::to_string(line_number) + ": " + why);
    };
    const auto fields = splitFields(line);
    if (fields.empty() || fields[0].starts_with('#')) continue;
    if (fields.size() < 3) fail("expected NAME SCOPE SECRET");
    if (fields.size() > 3) fail("unexpected text after the secret (expected NAME SCOPE SECRET)");

    const std::string_view name = fields[0];
    if (name.size() > kMaxNameLength || !std::all_of(name.begin(), name.end(), isNameChar)) {
      fail("invalid name (1-64 characters of A-Z a-z 0-9 . _ -)");
    }
    const auto scope = parseScope(fields[1]);
    if (!scope) fail(describeScope(fields[1]) + " (expected read, operate or schedule)");
    std::string why;
    const auto digest = secretDigest(fields[2], why);
    if (!digest) fail(why);
    if (!names.emplace(name).second) fail("duplicate name '" + std::string(name) + "'");
    entries.push_back(TokenEntry{std::string(name), *scope, *digest});
  }
  return TokenSet(std::move(entries));
}

TokenSet TokenSet::loadFile(const std::filesystem::path& path) {
  const std::string where = path.string();
  // O_NONBLOCK so that a FIFO planted at the path cannot hang start-up; it has
  // no effect on the regular file we expect. fstat on the open descriptor
  // checks the file we actually read, not whatever the path names later.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) throw TokenFileError(where + ": cannot open: " + std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) throw TokenFileError(where + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw TokenFileError(where + ": not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw TokenFileError(where + ": permissions " + mode +
                         " are too open; the tokens file must not be accessible by group or others (chmod 600)");
  }

  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw TokenFileError(where + ": cannot read: " + std::strerror(errno));
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  return parse(text, where);
}

std::optional<Principal> TokenSet::authenticate(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  const Sha256Digest presented = sha256(token);
  // Visit every entry whatever matched, so the time taken does not depend on
  // which entry (if any) the token belongs to.
  const TokenEntry* match = nullptr;
  for (const TokenEntry& entry : entries_) {
    const bool equal = CRYPTO_memcmp(presented.data(), entry.digest.data(), presented.size()) == 0;
    if (equal && match == nullptr) match = &entry;
  }
  if (match == nullptr) return std::nullopt;
  return Principal{match->name, match->scope};
}

}  // namespace phonefarm
