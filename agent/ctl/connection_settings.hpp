// Where phonefarmctl finds the agent and its token: --url (default the
// `listen` address of /etc/phonefarm-agent/agent.toml), --token-file (default
// /etc/phonefarm-agent/ctl-token) or $PHONEFARM_TOKEN.
#pragma once

#include <string>

namespace phonefarm::ctl {

inline constexpr const char* kDefaultConfig = "/etc/phonefarm-agent/agent.toml";
inline constexpr const char* kDefaultTokenFile = "/etc/phonefarm-agent/ctl-token";
inline constexpr const char* kFallbackUrl = "http://127.0.0.1:8787";

// http://<listen> of the default config when it is readable (https:// when it
// sets [http] tls_cert), else kFallbackUrl.
std::string defaultUrl();

// --token-file if given explicitly, else $PHONEFARM_TOKEN, else the default
// file. Throws Exit{2} when there is no usable token.
std::string loadToken(const std::string& token_file, bool explicit_file);

}  // namespace phonefarm::ctl
