// The exec shim: the leader process of every execution, run by the agent as
// `phonefarm-agent exec-shim --exec-dir DIR --run-as USER [--env K=V]... -- CMD...`
// inside the execution's cgroup. It drops to the work user, starts the
// command with its output in DIR/stdout.log and DIR/stderr.log, forwards the
// cooperative stop signals to it, waits for it and writes DIR/status.json
// (exec_status.hpp). Whether started by root or by an unprivileged agent
// holding CAP_SETUID/CAP_SETGID, it runs the command as run_as with every
// capability set empty, or not at all (exit 125). It holds nothing of the agent's (no fds, no parent-death
// signal), so work and its exit status outlive an agent restart. It does not
// wait for grandchildren: the agent watches the cgroup for that.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::exec {

inline constexpr const char* kExecShimSubcommand = "exec-shim";

// Exit codes of the shim process. Anything but kShimExitOk means status.json
// was not written by this run.
inline constexpr int kShimExitOk = 0;      // the command ran (or failed to exec); status.json written
inline constexpr int kShimExitFailed = 1;  // a system failure in the shim; the cause is in stderr.log
// Bad arguments, a refused identity (root, unknown user), or privileges it
// could not drop (a capability left, a way back to the caller's uid).
inline constexpr int kShimExitRefused = 125;

// The stop signals a queue item may choose, plus the SIGCONT the agent sends
// after them. The agent starts the shim with these blocked (SpawnRequest::
// blocked_signals) and the shim keeps them blocked, reading them from a
// signalfd: a notice that arrives in any phase, even before the command
// exists, is held and forwarded to the command, never acted on by the shim.
const std::vector<int>& shimForwardedSignals();

struct ShimOptions {
  std::filesystem::path exec_dir;  // absolute; the agent's, group run_as's primary group, 0770
  std::string run_as;              // user name; never resolves to root
  std::vector<std::string> env;    // "K=V": the whole environment of the command
  std::vector<std::string> argv;   // argv[0] absolute; no PATH search
};

// `args` are the arguments after "exec-shim". Flags may come in any order
// before "--"; everything after "--" is the command.
Result<ShimOptions> parseShimArgs(const std::vector<std::string>& args);

// Runs the shim in the calling process (it changes the process's credentials,
// cwd, signal mask and fds 0-2) and returns its exit code. Meant to be the
// whole life of a process: main() returns it, tests _exit() with it.
int runExecShim(const ShimOptions& options);

}  // namespace phonefarm::exec
