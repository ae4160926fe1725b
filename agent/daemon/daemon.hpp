// Daemon: builds the agent's objects from the config (state dir and its lock,
// tokens, store, event loop, cancel service, HTTP server, API handler), wires
// signals (SIGTERM/SIGINT: graceful stop; SIGHUP: reload tokens), tells
// systemd when it is ready, and runs the event loop on its thread (pf-io)
// until stopped.
#pragma once

#include "common/config/config.hpp"

namespace phonefarm {

class Daemon {
 public:
  explicit Daemon(AgentConfig config) : config_(std::move(config)) {}
  // Blocks until a graceful stop; returns the process exit code. Throws on
  // start-up failures (bad tokens file, state dir locked, bind failure).
  int run();

 private:
  AgentConfig config_;
};

}  // namespace phonefarm
