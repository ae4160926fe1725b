// The --dev configuration; see dev_config.hpp.
#include "common/config/dev_config.hpp"

#include <filesystem>

namespace phonefarm {

AgentConfig devConfig() {
  AgentConfig config;
  config.listen = ListenAddress{"127.0.0.1", 8787};
  config.state_dir = "./var";
  config.tokens_file = "./var/tokens";
  config.phones = {
      {"phone_01", "emulator-5554", std::nullopt},
      {"phone_02", "emulator-5556", std::nullopt},
      {"phone_03", "emulator-5558", std::nullopt},
  };
  // Work runs as nobody, from ./var/jobs (scripts/dev-up puts a demo job there).
  config.work.run_as = "nobody";
  config.work.allowed_command_prefixes = {(std::filesystem::absolute(config.state_dir) / "jobs").string() + "/"};
  // A developer's machine usually has none of the emulators running: work
  // starts anyway, and a forced kill does not park the absent phone as
  // needs_attention (which would hold every later demo job).
  config.work.wait_for_device = false;
  config.reset.on_forced_cancel = false;
  // A developer's disk is often fuller than a rack host's.
  config.storage.min_free_bytes = 64ULL * 1024 * 1024;
  config.storage.reserve_bytes = 8ULL * 1024 * 1024;
  return config;
}

}  // namespace phonefarm
