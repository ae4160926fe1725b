// The exec shim: the leader process of every execution, run by the agent as
// `phonefarm-agent exec-shim --control-dir C --work-dir W --run-as USER
// [--log-max-bytes N] -- CMD...`
// inside the execution's cgroup. It is the command's supervisor and never
// becomes run_as itself: it stays the agent's user, so the work can neither
// signal, ptrace nor replace it, and what it records is what it saw from
// waitid(). It reads the command's environment from C/env (0600, written by
// the agent, deleted by the shim once read: values never sit on a command
// line), opens C/stdout.log and C/stderr.log, into which it relays the
// command's output from two pipes (at most N bytes each: log_relay.hpp), forks
// the command, which alone drops to run_as (groups, gid, uid, every
// capability, no_new_privs) and starts in W, forwards the cooperative stop
// signals to it, waits for it and writes C/status.json (exec_status.hpp).
// C is the agent's and 0700: the work cannot enter it. After the fork the
// shim keeps no capability but CAP_KILL (to forward signals to another uid).
// It holds nothing of the agent's (no fds, no parent-death signal), so work
// and its exit status outlive an agent restart. It does not wait for
// grandchildren (the agent watches the cgroup for that); it relays what they
// write only for a short grace after the command's exit (at most 2 s).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agent/exec/log_relay.hpp"
#include "agent/exec/work_limits.hpp"
#include "common/result.hpp"

namespace phonefarm::exec {

inline constexpr const char* kExecShimSubcommand = "exec-shim";

// Exit codes of the shim process. Anything but kShimExitOk means status.json
// was not written by this run.
inline constexpr int kShimExitOk = 0;      // the command ran (or failed to exec); status.json written
inline constexpr int kShimExitFailed = 1;  // a system failure in the shim; the cause is in stderr.log
// Bad arguments, a refused identity (root, unknown user), or privileges the
// command could not drop (a capability left, a way back to the caller's uid).
inline constexpr int kShimExitRefused = 125;

// The environment file in the control dir: "K=V" entries, each ended by a
// NUL byte. At most kMaxEnvFileBytes.
inline constexpr const char* kEnvFileName = "env";
inline constexpr std::size_t kMaxEnvFileBytes = 1024 * 1024;

// The stop signals a queue item may choose, plus the SIGCONT the agent sends
// after them. The agent starts the shim with these blocked (SpawnRequest::
// blocked_signals) and the shim keeps them blocked, reading them from a
// signalfd: a notice that arrives in any phase, even before the command
// exists, is held and forwarded to the command, never acted on by the shim.
const std::vector<int>& shimForwardedSignals();

// The largest --log-max-bytes (1 TiB), as [work] log_max_bytes takes it.
inline constexpr std::uint64_t kMaxLogMaxBytes = 1ULL << 40;

struct ShimOptions {
  std::filesystem::path control_dir;  // absolute; the agent's, 0700: env, logs, status.json
  std::filesystem::path work_dir;     // absolute; the command's cwd: the agent's, group run_as, 0770
  std::string run_as;                 // user name; never resolves to root
  std::vector<std::string> argv;      // argv[0] absolute; no PATH search
  // --log-max-bytes: what each of stdout.log and stderr.log keeps at most
  // (log_relay.hpp); the default is kDefaultLogMaxBytes.
  std::uint64_t log_max_bytes = kDefaultLogMaxBytes;
  // Open cgroup.procs files the command writes itself into before it drops
  // to run_as (the job unit's limited leaf, job_unit_shim.hpp); none when
  // the agent put the shim in its leaf already.
  std::vector<int> command_cgroups;
  // The command's environment, taken from control_dir/env already (the job
  // unit's shim, which checks it against the config's env policy first:
  // job_unit_shim.hpp); none = the shim takes the file itself.
  std::optional<std::vector<std::string>> env;
  // Reads what the work limits did (the job unit's cgroups), when the
  // command has ended; its answer goes into status.json's limit_hits.
  // None when the agent reads the execution's cgroups itself.
  std::function<LimitHits()> limit_hits = nullptr;
};

// Reads and deletes control_dir/env ("K=V" entries, each ended by a NUL
// byte): the agent's own regular file, never through a link, at most
// kMaxEnvFileBytes. The values exist on disk only until the shim has them.
Result<std::vector<std::string>> takeShimEnvFile(const std::filesystem::path& control_dir);

// Writes `env` ("K=V" entries) as control_dir/env, mode 0600, for the shim.
Status writeShimEnvFile(const std::filesystem::path& control_dir, const std::vector<std::string>& env);

// `args` are the arguments after "exec-shim". Flags may come in any order
// before "--"; everything after "--" is the command. --log-max-bytes is
// optional (1 to kMaxLogMaxBytes).
Result<ShimOptions> parseShimArgs(const std::vector<std::string>& args);

// Runs the shim in the calling process (it changes the process's credentials,
// cwd, signal mask and fds 0-2) and returns its exit code. Meant to be the
// whole life of a process: main() returns it, tests _exit() with it.
int runExecShim(const ShimOptions& options);

}  // namespace phonefarm::exec
