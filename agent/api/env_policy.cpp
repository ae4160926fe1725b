// See env_policy.hpp.
#include "agent/api/env_policy.hpp"

#include <algorithm>

namespace phonefarm::api {

const std::vector<std::string_view>& deniedEnvPatterns() {
  static const std::vector<std::string_view> kPatterns = {
      // The dynamic loader and glibc.
      "LD_*", "GCONV_PATH", "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES", "MALLOC_*", "RES_OPTIONS",
      "RESOLV_HOST_CONF", "LOCALDOMAIN",
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
      return std::string("a loader or interpreter hook (") + std::string(pattern) +
             ") that could make an allowed command run other code";
    }
  }
  return std::nullopt;
}

}  // namespace phonefarm::api
