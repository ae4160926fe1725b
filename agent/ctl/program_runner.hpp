// runProgram: starts a helper program (tar, journalctl) for phonefarmctl
// with posix_spawnp — no shell, so no quoting of paths — and waits for it
// with a deadline, after which it is killed.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace phonefarm::ctl {

struct ProgramResult {
  bool started = false;    // false: not found or not executable (see error)
  int exit_code = -1;      // the exit status, or 128 + signal
  bool timed_out = false;  // killed at the deadline
  std::string error;       // why it could not be started
};

// Runs argv[0] (searched in PATH) with stdin from /dev/null. `output_file`:
// stdout and stderr go there (created 0644, truncated); nullopt: inherited.
ProgramResult runProgram(const std::vector<std::string>& argv, const std::optional<std::string>& output_file,
                         std::chrono::milliseconds timeout);

// The full path of `name` in PATH, if executable there.
std::optional<std::string> findInPath(const std::string& name);

}  // namespace phonefarm::ctl
