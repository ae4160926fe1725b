// runCommand: runs a program (no shell) for a test, feeds it stdin, and
// returns its exit code with stdout and stderr merged in the order written.
// Bounded by a deadline: a program still running then is SIGKILLed and the
// result says so, so a hung tool fails the test instead of hanging CI.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace phonefarm::testing {

struct CommandResult {
  int exit_code = -1;  // -1 unless the program exited normally
  std::string output;  // stdout + stderr
  bool timed_out = false;
};

CommandResult runCommand(const std::vector<std::string>& argv, std::string_view stdin_data = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace phonefarm::testing
