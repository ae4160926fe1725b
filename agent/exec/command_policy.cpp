// The submit-time command allow-list; the rules are in the header.
#include "agent/exec/command_policy.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <system_error>

#include "common/os/user_lookup.hpp"

namespace phonefarm::exec {
namespace {

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }  // NOLINT(cppcoreguidelines-no-malloc): realpath(3) mallocs
};

// realpath(3); nullopt with errno set on failure.
std::optional<std::string> resolve(const std::string& path) {
  std::unique_ptr<char, FreeDeleter> resolved(::realpath(path.c_str(), nullptr));
  if (!resolved) return std::nullopt;
  return std::string(resolved.get());
}

// A prefix as an absolute path without trailing '/' ("" for the root), or
// nullopt for something that cannot name a directory (relative, empty, NUL).
std::optional<std::string> normalisePrefix(const std::string& prefix) {
  if (!prefix.starts_with('/') || prefix.find('\0') != std::string::npos) return std::nullopt;
  std::string p = resolve(prefix).value_or(std::filesystem::path(prefix).lexically_normal().string());
  while (!p.empty() && p.back() == '/') p.pop_back();
  return p;
}

// Whole-component containment: "/a/b" is under "/a" and "/a/b", not "/a/b/c" or "/a/bX".
bool isUnder(const std::string& path, const std::string& prefix) {
  if (path.size() == prefix.size()) return path == prefix;
  return path.size() > prefix.size() && path.starts_with(prefix) && path[prefix.size()] == '/';
}

// Whether the mode bits of `st` let the user `uid` (primary group `gid`,
// supplementary `groups`) write it: the owner's, the group's or the others'
// bit, whichever class the user falls in.
bool permitsWrite(const struct stat& st, uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  if (st.st_uid == uid) return (st.st_mode & S_IWUSR) != 0;
  const bool in_group = st.st_gid == gid || std::find(groups.begin(), groups.end(), st.st_gid) != groups.end();
  return (st.st_mode & (in_group ? S_IWGRP : S_IWOTH)) != 0;
}

std::string joined(const std::vector<std::string>& prefixes) {
  if (prefixes.empty()) return "none configured";
  std::string out;
  for (const auto& p : prefixes) {
    if (!out.empty()) out += ", ";
    out += p;
  }
  return out;
}

}  // namespace

Result<std::string> resolveAllowedCommand(const std::string& program, const std::vector<std::string>& prefixes) {
  auto refuse = [](std::string why) { return makeError(ErrorKind::kInvalid, std::move(why)); };
  if (!program.starts_with('/') || program.find('\0') != std::string::npos) {
    return refuse("command " + program + " is not an absolute path");
  }
  auto resolved = resolve(program);
  if (!resolved) return refuse("command not found: " + program + " (" + std::generic_category().message(errno) + ")");

  bool allowed = false;
  for (const auto& prefix : prefixes) {
    auto p = normalisePrefix(prefix);
    if (p && isUnder(*resolved, *p)) {
      allowed = true;
      break;
    }
  }
  if (!allowed) {
    return refuse("command " + program + " resolves to " + *resolved + ", which is not under an allowed prefix (" +
                  joined(prefixes) + ")");
  }

  struct stat st {};
  if (::stat(resolved->c_str(), &st) != 0) {
    return refuse("command not found: " + program + " (" + std::generic_category().message(errno) + ")");
  }
  if (!S_ISREG(st.st_mode)) return refuse("command " + program + " is not a regular file");
  if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) return refuse("command " + program + " is not executable");
  return std::move(*resolved);
}

std::optional<std::string> checkCommandAllowed(const std::string& program, const std::vector<std::string>& prefixes) {
  auto resolved = resolveAllowedCommand(program, prefixes);
  if (resolved) return std::nullopt;
  return resolved.error().message;
}

std::optional<std::string> writableDirOnPrefix(const std::string& prefix, uid_t uid, gid_t gid,
                                               const std::vector<gid_t>& groups) {
  auto p = normalisePrefix(prefix);
  if (!p) return std::nullopt;
  // From the prefix up to "/": each directory, and the entry below it.
  std::filesystem::path dir = p->empty() ? std::filesystem::path("/") : std::filesystem::path(*p);
  // The owner of the entry below `dir` on the way down; -1 = none known.
  long long child_owner = -1;
  for (;;) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      bool writable = permitsWrite(st, uid, gid, groups);
      // In a sticky directory only an entry's owner may rename or remove it.
      if (writable && (st.st_mode & S_ISVTX) != 0 && child_owner >= 0 && child_owner != static_cast<long long>(uid)) {
        writable = false;
      }
      if (writable || st.st_uid == uid) return dir.string();
      child_owner = st.st_uid;
    } else {
      child_owner = -1;
    }
    if (dir == dir.root_path()) return std::nullopt;
    dir = dir.parent_path();
  }
}

std::optional<std::string> checkPrefixesNotWritableBy(const std::vector<std::string>& prefixes,
                                                      const std::string& run_as) {
  auto user = os::lookupUser(run_as);
  if (!user || !*user) return std::nullopt;
  const std::vector<gid_t> groups = os::groupsOf(run_as, (*user)->gid);
  for (const auto& prefix : prefixes) {
    if (auto dir = writableDirOnPrefix(prefix, (*user)->uid, (*user)->gid, groups)) {
      std::string why = "work.allowed_command_prefixes entry ";
      why.append(prefix).append(": ").append(*dir).append(" is writable by (or owned by) run_as user ");
      why.append(run_as).append(", who could swap a command between its check and its exec");
      return why;
    }
  }
  return std::nullopt;
}

std::optional<std::string> checkCommandNotWritableBy(const std::string& resolved, const std::string& run_as) {
  auto user = os::lookupUser(run_as);
  if (!user || !*user) return std::nullopt;
  const uid_t uid = (*user)->uid;
  const gid_t gid = (*user)->gid;
  const std::vector<gid_t> groups = os::groupsOf(run_as, gid);
  struct stat st {};
  if (::stat(resolved.c_str(), &st) == 0) {
    if (st.st_uid == uid || permitsWrite(st, uid, gid, groups)) {
      return "command " + resolved + " is writable by (or owned by) run_as user " + run_as +
             ", whose jobs could change what it runs";
    }
  }
  const std::string parent = std::filesystem::path(resolved).parent_path().string();
  if (auto dir = writableDirOnPrefix(parent, uid, gid, groups)) {
    return "command " + resolved + ": " + *dir + " is writable by (or owned by) run_as user " + run_as +
           ", whose jobs could swap what it runs";
  }
  return std::nullopt;
}

std::optional<std::string> checkRunAsNotSelf(const std::string& run_as, uid_t self) {
  auto user = os::lookupUser(run_as);
  if (!user || !*user || (*user)->uid != self) return std::nullopt;
  return "work.run_as user '" + run_as + "' is uid " + std::to_string(self) +
         ", the agent's own: its jobs could signal or ptrace the agent and their supervisor; run work as a user of "
         "its own (the package's phonefarm-work)";
}

}  // namespace phonefarm::exec
