// phonefarmctl's subcommands, one file each (cmd_<name>.cpp). Each add*()
// declares its subcommand and options on the CLI and returns how to run it
// once the command line is parsed; main.cpp builds the client and runs the
// one that was given.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "agent/ctl/agent_client.hpp"

namespace phonefarm::ctl {

// Global options, parsed before any subcommand runs.
struct GlobalOptions {
  bool json = false;    // print the agent's JSON as is
  bool colors = false;  // color human tables (resolved from --color)
};

struct Context {
  const AgentClient& client;
  const GlobalOptions& opt;
};

struct Subcommand {
  CLI::App* app = nullptr;
  std::function<void(const Context&)> run;
};

Subcommand addPhones(CLI::App& app);
Subcommand addHubs(CLI::App& app);
Subcommand addProcesses(CLI::App& app);
Subcommand addShow(CLI::App& app);
Subcommand addCancel(CLI::App& app);
Subcommand addReset(CLI::App& app);
Subcommand addLogs(CLI::App& app);
Subcommand addDebugDump(CLI::App& app);
Subcommand addWatch(CLI::App& app);

// requested_by of the requests phonefarmctl makes: system "phonefarmctl",
// the (sudo) user, and the host.
boost::json::object requestedBy();

// CLI check: the option's value must not be empty.
const CLI::Validator& nonEmpty();

}  // namespace phonefarm::ctl
