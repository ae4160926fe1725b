// runCommand: runs a program (no shell) for a test, feeds it stdin, and
// returns its exit code with stdout and stderr merged in the order written
// (or stderr apart, if asked). Bounded by a deadline: a program still running
// then is SIGKILLed and the result says so, so a hung tool fails the test
// instead of hanging CI.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace phonefarm::testing {

struct CommandResult {
  int exit_code = -1;  // -1 unless the program exited normally
  std::string output;  // stdout + stderr (stdout only with separate_stderr)
  std::string error;   // stderr, with separate_stderr
  bool timed_out = false;
};

struct CommandOptions {
  std::string_view stdin_data;
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  std::filesystem::path cwd;     // empty: the test's own
  bool separate_stderr = false;  // stderr to CommandResult::error
};

CommandResult runCommand(const std::vector<std::string>& argv, const CommandOptions& options);

inline CommandResult runCommand(const std::vector<std::string>& argv, std::string_view stdin_data = {},
                                std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  CommandOptions options;
  options.stdin_data = stdin_data;
  options.timeout = timeout;
  return runCommand(argv, options);
}

}  // namespace phonefarm::testing
