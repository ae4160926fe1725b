// Agent URL and token lookup; see connection_settings.hpp.
#include "agent/ctl/connection_settings.hpp"

#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "agent/ctl/agent_client.hpp"
#include "common/config/config.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::ctl {
namespace {

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(0, s.find_first_not_of(ws));
  s.erase(s.find_last_not_of(ws) + 1);
  return s;
}

}  // namespace

std::string defaultUrl() {
  std::ifstream probe(kDefaultConfig);
  if (!probe) return kFallbackUrl;
  try {
    auto cfg = loadConfigFile(kDefaultConfig);
    if (cfg.listen.port == 0) return kFallbackUrl;
    std::string host = cfg.listen.host;
    if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
    if (host == "::") host = "::1";
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    // An agent with tls_cert speaks only TLS on its port.
    return std::string(cfg.http.tls ? "https://" : "http://") + host + ":" + std::to_string(cfg.listen.port);
  } catch (const std::exception&) {
    return kFallbackUrl;
  }
}

std::string loadToken(const std::string& token_file, bool explicit_file) {
  std::string token;
  std::string source;
  const char* env = std::getenv("PHONEFARM_TOKEN");
  if (!explicit_file && env != nullptr && *env != '\0') {
    token = trim(env);
    source = "PHONEFARM_TOKEN";
  } else {
    std::ifstream in(token_file);
    if (!in) {
      throw Exit{kExitUsage, "cannot read the token file " + token_file + ": " + os::errnoText(errno) +
                                 " (use --token-file or set PHONEFARM_TOKEN)"};
    }
    std::getline(in, token);
    token = trim(token);
    source = token_file;
  }
  if (token.empty()) throw Exit{kExitUsage, "no token in " + source};
  for (char c : token) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) == 0x7f) {
      throw Exit{kExitUsage, "the token in " + source + " contains spaces or control characters"};
    }
  }
  return token;
}

}  // namespace phonefarm::ctl
