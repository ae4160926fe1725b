// Process spawning for executions: starts a command, optionally directly inside
// a cgroup leaf (clone3 + CLONE_INTO_CGROUP, so not one instruction of the
// child runs outside its container), and hands back a pidfd so every later
// signal and wait targets exactly that process, never a recycled pid
// (docs/design.md, "Containment and termination").
//
// Raw syscall() throughout: glibc 2.36 has no clone3 wrapper and its
// <sys/pidfd.h> is not usable from C++ (no extern "C").
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::exec {

inline constexpr std::size_t kMaxJoinCgroups = 4;

struct SpawnRequest {
  // argv[0] is the program's path, used as is: no PATH search.
  std::vector<std::string> argv;
  // The complete environment, "K=V" entries; nothing is inherited.
  std::vector<std::string> env;
  // Leaf cgroup directory the child starts in; none = the agent's own cgroup.
  std::optional<std::filesystem::path> cgroup;
  // Further cgroups the child joins (writes itself into their cgroup.procs)
  // before exec: the cgroup v1 hierarchies of the work limits
  // (work_limits.hpp), which clone3's CLONE_INTO_CGROUP cannot name. At most
  // kMaxJoinCgroups.
  std::vector<std::filesystem::path> join_cgroups;
  // setsid() in the child: it leads a new session and process group whose id
  // is its pid (what the process-group fallback runtime kills).
  bool new_session = true;
  // Signals blocked in the child from before its first instruction through
  // exec (the exec shim's stop signals: a notice sent while it starts stays
  // pending instead of killing it). Every other signal starts unblocked.
  std::vector<int> blocked_signals;
  // The child's stdio; -1 = /dev/null. Borrowed: the caller still owns them.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
};

struct Spawned {
  pid_t pid = -1;
  // Owned by the caller (close it). -1 only on kernels older than 5.3, which
  // have no pidfds; then reapIfExited falls back to the pid.
  int pidfd = -1;
};

// How a process ended: exactly one of the two is set.
struct ExitStatus {
  std::optional<int> code;    // exit(code)
  std::optional<int> signal;  // killed by this signal
  bool core_dumped = false;
};

// Starts the program and returns once it has exec'd. A failure in the child
// before exec (joining the cgroup, setsid, exec itself) comes back as an
// error carrying the child's real errno: "exec /x: No such file or directory".
// The child gets: the cgroup (before running any code), a new session if
// asked, its stdio, default signal dispositions, a signal mask of exactly
// `blocked_signals`, and no other file descriptor.
Result<Spawned> spawnProcess(const SpawnRequest& request);

// The fallback spawnProcess uses when clone3 or CLONE_INTO_CGROUP is missing
// (kernel < 5.7, or a seccomp filter that hides clone3): fork, the child
// writes itself into `<cgroup>/cgroup.procs` before exec, the parent takes a
// pidfd with pidfd_open. Public so tests cover it on current kernels.
Result<Spawned> spawnProcessWithFork(const SpawnRequest& request);

// pidfd_open(2); the fd is close-on-exec. kNotFound when the pid is gone.
Result<int> openPidfd(pid_t pid);

// pidfd_send_signal(2). kNotFound (ESRCH) when the process has already exited.
Status signalPidfd(int pidfd, int sig);

// waitid(WEXITED | WNOHANG) on the pidfd (or on the pid when pidfd < 0):
// nullopt while the process runs; once it has exited, reaps it and returns how
// it ended. Only for our own children (ECHILD otherwise).
Result<std::optional<ExitStatus>> reapIfExited(int pidfd, pid_t pid);

}  // namespace phonefarm::exec
