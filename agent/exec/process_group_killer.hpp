// The fallback runtime's kill, for hosts without a writable cgroup v2
// (docs/design.md, "Containment and termination"): each execution's leader starts
// a new session and process group (SpawnRequest::new_session), the agent is
// a child subreaper, and a kill is `killpg` plus a sweep of /proc for the
// descendants that left the group.
//
// How the sweep finds the tree: only the agent's own descendants are ever
// candidates (walking ppid links down from getpid()), so nothing outside the
// agent's tree can be hit. Among them it takes the group and session members,
// everything below those (a `setsid` child of a live shell is still its
// child), and orphans re-parented to the agent that carry the execution's
// environment marker, plus their subtrees. The group and every found process
// are SIGSTOPped first and the tree is re-mapped until nothing new appears,
// so no one forks away while it is mapped; then all get SIGKILL. Every signal
// to a single process goes through a pidfd opened after checking the
// process's start time, so a recycled pid is never hit.
//
// Limits, honestly:
// - A process that double-forks and calls setsid, and whose intermediate
//   parent has exited, keeps no kernel-visible link to its execution. The
//   environment marker is the only one left: a process that starts with a
//   different environment (env -i, a fresh envp) and then daemonizes escapes.
//   Only a cgroup (or a PID namespace) closes that hole.
// - The agent must be a child subreaper (becomeChildSubreaper) before it
//   spawns work; otherwise orphans go to init and are not our descendants.
// - Stopping is bounded by rounds, not guaranteed: a task in uninterruptible
//   sleep may not stop in time, and if it is mid-fork its child can be missed.
// - Only descendants of the calling process are swept. After an agent
//   restart the previous instance's work has been re-parented to init (or
//   the service manager): then only killpg reaches it, not the escapees.
// - `pgid` is trusted: call this before reaping the leader. An unreaped
//   leader keeps its pid, and so the group id, from being reused.
// - Needs pidfd_open (kernel 5.3) for the sweep, and the right to signal the
//   work and read its /proc/<pid>/environ (root, or CAP_KILL +
//   CAP_SYS_PTRACE when the work runs as another user).
// - The agent must reap what is re-parented to it: reapAdoptedZombies.
#pragma once

#include <sys/types.h>

#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::exec {

// /proc/<pid>/stat starttime (clock ticks since boot): with the pid it names
// one process. nullopt when the process is gone.
std::optional<long long> processStartTime(pid_t pid);

// prctl(PR_SET_CHILD_SUBREAPER): orphans in our tree re-parent to us, not to init.
Status becomeChildSubreaper();

struct GroupKillReport {
  bool group_signalled = false;  // killpg found members of the group
  std::vector<pid_t> killed;     // every process SIGKILLed through a pidfd
  int rounds = 0;                // /proc scans made
};

// Kills process group `pgid` (and session `pgid`, when its leader started
// one) and its escaped descendants as described above. `environ_marker` is a
// "K=V" entry every process of this execution inherits (e.g. its
// PHONEFARM_PROCESS_ID); empty = orphans are not claimed. Returns once the
// kills are issued; the processes may still be exiting. Without
// `signal_group` no killpg(2) is sent and group or session membership claims
// nothing: only processes of the agent's own tree that carry the marker (and
// their descendants) are killed, each through a pidfd. Callers pass false
// unless the group's leader is verified (same pid and start time as stored,
// or an unreaped child), since after pid reuse the id may name someone
// else's group, even another execution's.
Result<GroupKillReport> killProcessGroupTree(pid_t pgid, std::string_view environ_marker = {},
                                             bool signal_group = true);

// Reaps zombies that were re-parented to us (their pids were never ours to
// supervise) and leaves alone the pids in `keep`, the leaders whose exit
// status the supervisor collects through their pidfds. Returns how many.
int reapAdoptedZombies(std::span<const pid_t> keep);

}  // namespace phonefarm::exec
