// phonefarmctl: the technician's command-line tool. It talks HTTP/1.1 to the
// local phonefarm-agent (docs/api.md) and prints what it answers as aligned tables
// or, with --json, as the agent sent it. This file parses the command line,
// builds the client and runs the subcommand (commands.hpp, one file each).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "agent/ctl/agent_client.hpp"
#include "agent/ctl/commands.hpp"
#include "agent/ctl/connection_settings.hpp"
#include "agent/ctl/output.hpp"

namespace {

using namespace phonefarm::ctl;

struct Options {
  std::string url;
  std::string token_file = kDefaultTokenFile;
  std::string cacert;  // https: trust anchor instead of the system store
  double timeout_seconds = 10;
  ColorMode color = ColorMode::kAuto;
  GlobalOptions global;
};

std::string footer() {
  return std::string("Token: --token-file (default ") + kDefaultTokenFile +
         ", one line), or the PHONEFARM_TOKEN environment variable when --token-file is not given.\n"
         "URL: --url, default the `listen` address of " +
         kDefaultConfig + " when readable (https when it sets tls_cert), else " + kFallbackUrl +
         ".\n"
         "TLS: https:// URLs verify the agent's certificate and host name against --cacert FILE (PEM), else the "
         "system's trusted CAs.\n"
         "Colors: --color=auto (default: only when stdout is a terminal, TERM is not dumb and NO_COLOR is unset), "
         "always or never.\n"
         "Exit codes:\n"
         "  0  success\n"
         "  1  the agent refused or failed the request (HTTP 4xx/5xx: bad token, missing scope, not found, invalid)\n"
         "  2  usage error (bad options or arguments, unreadable token)\n"
         "  3  the agent could not be reached (connection refused, timeout, not an HTTP answer, TLS handshake or "
         "certificate verification failed)";
}

}  // namespace

// Everything but the last-resort catch of main().
static int runCtl(int argc, char** argv) {
  CLI::App app{"phonefarmctl: see and fix this rack's phones and work (talks to phonefarm-agent)"};
  app.set_version_flag("--version", std::string("phonefarmctl ") + PHONEFARM_VERSION);
  app.require_subcommand(1);
  // The global options also after the subcommand (`phonefarmctl watch --json`):
  // an option the subcommand does not know is tried on the app. Set before
  // the subcommands are added, which inherit it.
  app.fallthrough();
  app.footer(footer());

  Options opt;
  app.add_option("--url", opt.url, "agent base URL, e.g. http://127.0.0.1:8787");
  auto* token_opt =
      app.add_option("--token-file", opt.token_file, "file holding the bearer token")->default_str(kDefaultTokenFile);
  app.add_option("--cacert", opt.cacert, "PEM CA certificate(s) to verify an https agent with")
      ->check(CLI::ExistingFile);
  app.add_flag("--json", opt.global.json, "print the agent's JSON as is");
  app.add_option("--timeout", opt.timeout_seconds, "seconds to wait for the agent (default 10)")
      ->check(CLI::Range(0.001, 3600.0));
  app.add_option("--color", opt.color, "auto | always | never (default auto)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, ColorMode>{
              {"auto", ColorMode::kAuto}, {"always", ColorMode::kAlways}, {"never", ColorMode::kNever}},
          CLI::ignore_case));

  const std::vector<Subcommand> commands{addPhones(app), addProcesses(app), addShow(app), addCancel(app), addReset(app),
                                         addLogs(app),   addDebugDump(app), addHubs(app), addWatch(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  try {
    opt.global.colors = colorsWanted(opt.color, STDOUT_FILENO);
    std::string url_text = opt.url.empty() ? defaultUrl() : opt.url;
    Url url;
    try {
      url = Url::parse(url_text);
    } catch (const UrlError& e) {
      throw Exit{kExitUsage, std::string("--url: ") + e.what()};
    }
    const std::string token = loadToken(opt.token_file, token_opt->count() > 0);
    const auto timeout = std::chrono::milliseconds(static_cast<long long>(opt.timeout_seconds * 1000));
    const AgentClient client(url, url_text, token, timeout, TlsClientOptions{opt.cacert});
    for (const auto& command : commands) {
      if (command.app->parsed()) command.run(Context{client, opt.global});
    }
    return kExitOk;
  } catch (const Exit& e) {
    std::cout.flush();
    if (!e.message.empty()) std::cerr << "phonefarmctl: " << e.message << '\n';
    return e.code;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "phonefarmctl: " << e.what() << '\n';
    return kExitApi;
  }
}

int main(int argc, char** argv) {
  try {
    return runCtl(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "phonefarmctl: " << e.what() << '\n';
  } catch (...) {
    std::cerr << "phonefarmctl: unexpected error\n";
  }
  return kExitApi;
}
