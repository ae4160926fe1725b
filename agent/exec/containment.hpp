// Containment runtimes: how one execution's process tree is started, watched,
// signalled and killed (docs/design.md, "Containment and termination").
//   - "cgroup": each execution in its own cgroup v2 leaf, entered at spawn;
//     the tree is gone when the leaf reports `populated 0`; kill is
//     cgroup.kill, repeated until empty.
//   - "process-group": the fallback without a writable cgroup v2. The leader
//     starts a new session; the agent is a child subreaper; the execution
//     ends when its leader has exited, and whatever of its group (or carrying
//     its environment marker) is left then is killed, because nothing else
//     could tell the agent when it is gone. Kill is killpg + sweep.
// The executor sees only Container and Containment, so its logic runs in
// unit tests against a fake runtime.
#pragma once

#include <sys/types.h>

#include <boost/json/object.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/exec/process_group_killer.hpp"  // processStartTime
#include "agent/exec/process_spawner.hpp"
#include "agent/exec/work_limits.hpp"
#include "common/result.hpp"

namespace phonefarm::exec {

inline constexpr std::string_view kRuntimeCgroup = "cgroup";
inline constexpr std::string_view kRuntimeProcessGroup = "process-group";
// A job unit (phonefarm-job@<id>.service) started through systemd; its
// cgroup is the unit's (systemd_containment.hpp).
inline constexpr std::string_view kRuntimeSystemdUnit = "systemd-unit";

struct ContainerInfo {
  std::string id;       // the execution id
  std::string runtime;  // kRuntimeCgroup | kRuntimeProcessGroup | kRuntimeSystemdUnit
  std::optional<std::string> cgroup;
  pid_t leader_pid = 0;                        // 0 when unknown (a re-adopted tree whose leader is gone)
  std::optional<long long> leader_start_time;  // /proc/<pid>/stat starttime, to verify after a restart
  boost::json::object toJson() const;          // docs/api.md termination.container
};

// One execution's process tree.
class Container {
 public:
  virtual ~Container() = default;
  virtual const ContainerInfo& info() const = 0;

  // Descriptors that become readable when something may have changed (the
  // leaf's cgroup.events, the leader's pidfd); the executor watches them and
  // calls poll() on readiness.
  virtual std::vector<int> watchFds() const = 0;

  // Consumes the readiness, reaps the leader if it is the agent's child, and
  // says whether the whole tree is gone (the execution has ended).
  virtual Result<bool> poll() = 0;

  // One signal to the leader (the exec shim, which forwards stop signals to
  // the command) through its pidfd. kNotFound when it has exited.
  virtual Status signalLeader(int sig) = 0;

  // Kills every process of the tree. Returns once the kill is issued; the
  // end shows up through poll().
  virtual Status kill() = 0;

  // The pids still alive in the tree (a snapshot, for reports).
  virtual std::vector<pid_t> pids() = 0;

  // After the end: frees what the container holds (removes the cgroup leaf
  // and the execution's cgroups of the work limits).
  virtual Status remove() = 0;

  // After the end, before remove(): the item's note when a work limit
  // stopped it (work_limits.hpp: OOM kill, pids limit), none otherwise.
  // `reported`: what the shim read from the job unit's cgroups (status.json's
  // limit_hits), which launchers without units never get.
  virtual std::optional<std::string> limitNote(const std::optional<LimitHits>& /*reported*/) { return std::nullopt; }
};

struct LaunchRequest {
  std::string execution_id;
  std::vector<std::string> argv;  // the shim's command line
  std::vector<std::string> env;   // the shim's environment
  std::string marker;             // "K=V" every process of the execution inherits
  // Blocked in the leader from before its first instruction (the shim's
  // forwarded signals, so a stop notice can never kill it while it starts).
  std::vector<int> blocked_signals;
  // For launchers that start the shim themselves (the job units): the
  // execution's control dir and the command (argv[0] resolved).
  std::filesystem::path control_dir;
  std::vector<std::string> command;
};

// Where the containers of this agent come from.
class Containment {
 public:
  virtual ~Containment() = default;
  virtual std::string_view runtime() const = 0;
  // Details for /readyz: the runtime, the cgroup directory, why cgroup v2 is
  // not used when falling back.
  virtual boost::json::object describe() const = 0;
  // The cgroup an execution with this id will get (stored before the launch,
  // so a crash in between still leaves its tree findable); none without cgroups.
  virtual std::optional<std::string> plannedCgroup(const std::string& execution_id) const = 0;
  virtual Result<std::unique_ptr<Container>> launch(const LaunchRequest& request) = 0;
  // Takes over an execution a previous agent instance started (from the store
  // row's fields). kNotFound when nothing of it is left to watch: its cgroup
  // is gone, or (process-group) its leader has exited.
  virtual Result<std::unique_ptr<Container>> adopt(const ContainerInfo& info, const std::string& marker) = 0;
  // For an execution that ended with no container to adopt (its tree was
  // gone at recovery): its limit note, as Container::limitNote(), and then
  // the removal of what the work limits left of it.
  virtual std::optional<std::string> releaseLimits(const std::string& /*execution_id*/,
                                                   const std::optional<LimitHits>& /*reported*/) {
    return std::nullopt;
  }
};

// The real runtimes. `cgroup_root` as in [work] cgroup_root ("" = detect);
// when cgroup v2 is not usable there, the process-group runtime is returned
// with the reason in describe(). `limits` ([work] pids_max, memory_max,
// cpu_weight) apply to every launch, through cgroup v2 or v1 (describe()
// says where, and which cannot be enforced; those are also logged once as
// exec.limit_unavailable).
std::unique_ptr<Containment> makeContainment(const std::string& cgroup_root, const WorkLimits& limits = {});

// A pidfd for `pid` only if it is still the process that started at
// `start_time` (checked after opening, so the fd cannot name a recycled pid).
Result<int> openVerifiedPidfd(pid_t pid, long long start_time);

}  // namespace phonefarm::exec
