// phonefarm-agent: parse the command line, load the config, run the daemon;
// every failure ends here as one clear line and a non-zero exit.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <string_view>
#include <vector>

#include "agent/daemon/daemon.hpp"
#include "agent/exec/command_policy.hpp"
#include "agent/exec/exec_shim.hpp"
#include "agent/exec/job_unit_limits.hpp"
#include "agent/exec/job_unit_shim.hpp"
#include "agent/exec/tree_removal_as_user.hpp"
#include "agent/http/tls_context.hpp"
#include "common/config/config.hpp"
#include "common/config/dev_config.hpp"
#include "common/config/dev_tokens.hpp"
#include "common/config/tokens.hpp"
#include "common/logging.hpp"

namespace {

constexpr const char* kDefaultConfig = "/etc/phonefarm-agent/agent.toml";

int checkConfig(const std::string& path) {
  const phonefarm::AgentConfig config = phonefarm::loadConfigFile(path);
  const phonefarm::TokenSet tokens = phonefarm::TokenSet::loadFile(config.tokens_file);
  if (auto self = phonefarm::exec::checkRunAsNotSelf(config.work.run_as, ::geteuid())) {
    throw phonefarm::ConfigError(*self);
  }
  if (auto writable =
          phonefarm::exec::checkPrefixesNotWritableBy(config.work.allowed_command_prefixes, config.work.run_as)) {
    throw phonefarm::ConfigError(*writable);
  }
  std::string tls = "plain HTTP";
  if (config.http.tls) tls = "TLS certificate " + phonefarm::http::loadTlsServerContext(*config.http.tls).subject;
  std::cout << path << ": OK (" << config.phones.size() << " phones; " << tokens.size() << " tokens in "
            << config.tokens_file.string() << "; " << tls << ")\n";
  return 0;
}

int runAgent(int argc, char** argv) {
  // The exec shim leads one execution and must outlive the agent: it runs
  // before CLI11, logging, config or the state lock are touched.
  if (argc > 1 && std::string_view(argv[1]) == phonefarm::exec::kExecShimSubcommand) {
    const std::vector<std::string> args(argv + 2, argv + argc);
    // The ExecStart of phonefarm-job@.service (job_unit_shim.hpp).
    if (phonefarm::exec::isJobUnitShim(args)) {
      auto unit_args = phonefarm::exec::parseJobUnitShimArgs(args);
      if (!unit_args) {
        std::cerr << "phonefarm-agent exec-shim: " << unit_args.error().message << "\n";
        return phonefarm::exec::kShimExitRefused;
      }
      return phonefarm::exec::runJobUnitShim(*unit_args);
    }
    auto options = phonefarm::exec::parseShimArgs(args);
    if (!options) {
      std::cerr << "phonefarm-agent exec-shim: " << options.error().message << "\n";
      return phonefarm::exec::kShimExitRefused;
    }
    return phonefarm::exec::runExecShim(*options);
  }
  // The systemd generator of the job units' limits (job_unit_limits.hpp):
  // runs at boot, before logging or the state dir, and always exits 0.
  if (argc > 1 && std::string_view(argv[1]) == phonefarm::exec::kJobUnitLimitsSubcommand) {
    return phonefarm::exec::runJobUnitLimits(std::vector<std::string>(argv + 2, argv + argc), std::cerr);
  }
  // Retention's helper for trees only the work user may delete (tree_removal_as_user.hpp).
  if (argc > 1 && std::string_view(argv[1]) == phonefarm::exec::kRemoveTreeSubcommand) {
    return phonefarm::exec::runRemoveTreeSubcommand(std::vector<std::string>(argv + 2, argv + argc));
  }
  CLI::App app{"phonefarm-agent: runs and cancels phone-farm work on this rack host"};
  app.set_version_flag("--version", std::string("phonefarm-agent ") + PHONEFARM_VERSION);
  std::string config_path = kDefaultConfig;
  bool dev = false;
  std::string log_level = "info";
  app.add_option("--config", config_path, "agent config (TOML)")->capture_default_str();
  app.add_flag("--dev", dev, "run with built-in development defaults (127.0.0.1:8787, state in ./var)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  auto* check = app.add_subcommand("check-config", "validate the config and the tokens file, then exit");
  check->add_option("--config", config_path, "agent config (TOML)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    phonefarm::setupLogging(log_level);
    if (*check) return checkConfig(config_path);
    phonefarm::AgentConfig config;
    if (dev) {
      config = phonefarm::devConfig();
      std::filesystem::create_directories(config.state_dir);
      if (phonefarm::ensureDevTokensFile(config.tokens_file)) {
        std::cerr << "dev tokens written to " << config.tokens_file.string() << "\n";
      }
    } else {
      config = phonefarm::loadConfigFile(config_path);
    }
    return phonefarm::Daemon(std::move(config)).run();
  } catch (const std::exception& e) {
    std::cerr << "phonefarm-agent: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

// Nothing escapes: CLI11's set-up and the exec shim's argument copy throw too.
int main(int argc, char** argv) {
  try {
    return runAgent(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "phonefarm-agent: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "phonefarm-agent: unknown exception\n";
  }
  return 1;
}
