// phonefarmctl: the technician's command-line tool. For now it prints its
// usage; the subcommands (phones, processes, show, cancel, reset, logs,
// debug-dump) arrive with the operations work.
#include <CLI/CLI.hpp>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"phonefarmctl: see and fix this rack's phones and work (talks to phonefarm-agent)"};
  app.set_version_flag("--version", std::string("phonefarmctl ") + PHONEFARM_VERSION);
  app.require_subcommand(0, 1);
  for (const char* name : {"phones", "processes", "show", "cancel", "reset", "logs", "debug-dump"}) {
    app.add_subcommand(name, "not available yet in this build")->allow_extras();
  }
  CLI11_PARSE(app, argc, argv);
  if (app.get_subcommands().empty()) {
    std::cout << app.help();
    return 0;
  }
  std::cerr << "phonefarmctl: '" << app.get_subcommands().front()->get_name()
            << "' is not available yet in this build; use the HTTP API (see README.md)\n";
  return 64;
}
