// See env_policy.hpp.
#include "agent/exec/env_policy.hpp"

#include <algorithm>

namespace phonefarm::exec {

const std::vector<std::string_view>& deniedEnvPatterns() {
  static const std::vector<std::string_view> kPatterns = {
      // The dynamic loader and glibc.
      "LD_*", "GCONV_PATH", "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES", "MALLOC_*", "RES_OPTIONS",
      "RESOLV_HOST_CONF", "LOCALDOMAIN",
      // Where the command's tools come from and where they read their
      // dotfiles (git's core.fsmonitor, .npmrc, ...).
      "PATH", "HOME",
      // Shells.
      "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "CDPATH", "BASH_FUNC_*",
      // Interpreters and runtimes.
      "PYTHON*", "PERL5*", "PERLLIB", "PERL_*", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS", "NODE_PATH", "LUA_INIT*",
      "LUA_PATH*", "LUA_CPATH*", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH"};
  return kPatterns;
}

std::optional<std::string> envNameRefusal(std::string_view name,
                                          const std::optional<std::vector<std::string>>& allowlist) {
  if (allowlist) {
    if (std::find(allowlist->begin(), allowlist->end(), name) != allowlist->end()) return std::nullopt;
    return "not in work.allowed_env";
  }
  for (std::string_view pattern : deniedEnvPatterns()) {
    const bool prefix = pattern.ends_with('*');
    const std::string_view stem = prefix ? pattern.substr(0, pattern.size() - 1) : pattern;
    if (prefix ? name.starts_with(stem) : name == stem) {
      if (name == "PATH" || name == "HOME") {
        return std::string("where the command's tools and their settings come from (") + std::string(pattern) +
               "), so an allowed command could run other code; work.allowed_env may allow it";
      }
      return std::string("a loader or interpreter hook (") + std::string(pattern) +
             ") that could make an allowed command run other code";
    }
  }
  return std::nullopt;
}

bool isAgentSetEnvName(std::string_view name) { return name.starts_with("PHONEFARM_") || name == "ANDROID_SERIAL"; }

std::vector<std::string> refusedCommandEnvNames(const std::vector<std::string>& entries,
                                                const std::optional<std::vector<std::string>>& allowlist,
                                                std::string_view home) {
  std::vector<std::string> refused;
  for (const std::string& entry : entries) {
    const auto eq = entry.find('=');
    const std::string_view name = std::string_view(entry).substr(0, eq);
    const std::string_view value =
        eq == std::string::npos ? std::string_view{} : std::string_view(entry).substr(eq + 1);
    if (isAgentSetEnvName(name)) continue;
    if (name == "PATH" && value == kDefaultCommandPath) continue;
    if (name == "HOME" && value == home) continue;
    if (!envNameRefusal(name, allowlist)) continue;
    if (std::find(refused.begin(), refused.end(), name) == refused.end()) refused.emplace_back(name);
  }
  return refused;
}

}  // namespace phonefarm::exec
