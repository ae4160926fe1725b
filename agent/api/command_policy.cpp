// The submit-time command allow-list; the rules are in the header.
#include "agent/api/command_policy.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <system_error>

namespace phonefarm::api {
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

std::optional<std::string> checkCommandAllowed(const std::string& program, const std::vector<std::string>& prefixes) {
  if (!program.starts_with('/') || program.find('\0') != std::string::npos) {
    return "command " + program + " is not an absolute path";
  }
  auto resolved = resolve(program);
  if (!resolved) return "command not found: " + program + " (" + std::generic_category().message(errno) + ")";

  bool allowed = false;
  for (const auto& prefix : prefixes) {
    auto p = normalisePrefix(prefix);
    if (p && isUnder(*resolved, *p)) {
      allowed = true;
      break;
    }
  }
  if (!allowed) {
    return "command " + program + " resolves to " + *resolved + ", which is not under an allowed prefix (" +
           joined(prefixes) + ")";
  }

  struct stat st {};
  if (::stat(resolved->c_str(), &st) != 0) {
    return "command not found: " + program + " (" + std::generic_category().message(errno) + ")";
  }
  if (!S_ISREG(st.st_mode)) return "command " + program + " is not a regular file";
  if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) return "command " + program + " is not executable";
  return std::nullopt;
}

}  // namespace phonefarm::api
