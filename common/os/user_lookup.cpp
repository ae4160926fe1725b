// See user_lookup.hpp.
#include "common/os/user_lookup.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>

#include "common/os/sys_error.hpp"

namespace phonefarm::os {
namespace {

constexpr std::size_t kMaxPasswdBuffer = 1 << 20;

}  // namespace

Result<std::optional<UserEntry>> lookupUser(const std::string& name) {
  const long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? static_cast<std::size_t>(hint) : 16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc = 0;
  while ((rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < kMaxPasswdBuffer) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0) return sysError("looking up user '" + name + "'", rc);
  if (found == nullptr) return std::optional<UserEntry>{};
  return std::optional<UserEntry>(UserEntry{pw.pw_uid, pw.pw_gid, pw.pw_dir != nullptr ? pw.pw_dir : "/"});
}

std::vector<gid_t> groupsOf(const std::string& name, gid_t primary) {
  int count = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(count));
  if (::getgrouplist(name.c_str(), primary, groups.data(), &count) < 0) {
    groups.resize(static_cast<std::size_t>(count));
    if (::getgrouplist(name.c_str(), primary, groups.data(), &count) < 0) count = 0;
  }
  groups.resize(static_cast<std::size_t>(count > 0 ? count : 0));
  return groups;
}

}  // namespace phonefarm::os
