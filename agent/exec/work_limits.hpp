// WorkLimiter: the per-execution limits of [work] (pids_max, memory_max,
// cpu_weight), in force before the command's first instruction.
//
// Each limit goes where the kernel has its controller: into the execution's
// cgroup v2 leaf when the work subtree has the controller enabled for its
// leaves, otherwise into a per-execution cgroup of the v1 hierarchy that
// carries it (hybrid hosts, where systemd keeps pids and memory on v1):
// `<the agent's own v1 cgroup>/phonefarm-work/<execution_id>`. The spawner
// makes the leader join those v1 cgroups before exec (SpawnRequest::
// join_cgroups); its whole tree inherits them. v1 paths are derived from the
// execution id, so a restarted agent finds them again without stored state.
//
// When the tree has ended, hits() reads what stopped it (OOM kills, refused
// forks) and release() removes the v1 cgroups. Nothing here knows the
// executor: whatever owns the work cgroups (today containment.cpp) calls it.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::exec {

struct WorkLimits {
  std::optional<std::int64_t> pids_max;
  std::optional<std::uint64_t> memory_max;
  std::optional<std::int64_t> cpu_weight;
};

// What the limits did to one execution, read after its end.
struct LimitHits {
  std::uint64_t oom_kills = 0;     // processes the OOM killer took at memory_max
  std::uint64_t pids_refused = 0;  // forks refused at pids_max

  bool operator==(const LimitHits&) const = default;
};

// The item's note for `hits` ("stopped by ..."), none when no limit was hit.
std::optional<std::string> limitNote(const LimitHits& hits, const WorkLimits& limits);

// The value N of the "key N" line in a flat-keyed cgroup file
// (memory.events, pids.events, memory.oom_control); 0 when absent.
std::uint64_t keyedCounter(std::string_view text, std::string_view key);

// The directory of our own cgroup in the v1 hierarchy carrying `controller`,
// from the texts of /proc/self/cgroup and /proc/self/mountinfo; none when no
// v1 hierarchy mounted here carries it.
std::optional<std::filesystem::path> v1CgroupDir(std::string_view proc_cgroup, std::string_view mountinfo,
                                                 std::string_view controller);

// What the limits did to the processes of the cgroup v2 directory `dir`:
// its pids.events "max" and memory.events "oom_kill" (0 for a file that is
// not there: the controller is not enabled in `dir`).
LimitHits v2CgroupHits(const std::filesystem::path& dir);

// For the job unit's shim (job_unit_shim.hpp): what systemd's copy of the
// limits (TasksMax=, MemoryMax=) did to the unit, for those of `limits`
// that are set (pids_max, memory_max). Read from the unit's own cgroup: `unit_v2_dir`
// where it has the controller (its pids.events, memory.events), otherwise
// the unit's cgroup in the v1 hierarchy carrying it (hybrid hosts), found
// from the texts of /proc/self/cgroup and /proc/self/mountinfo: pids.events
// "max", memory.oom_control "oom_kill". memory.failcnt is not read: it
// counts every charge that hit the limit, reclaimed page cache included,
// not kills.
LimitHits unitCgroupHits(const WorkLimits& limits, const std::filesystem::path& unit_v2_dir,
                         std::string_view proc_cgroup, std::string_view mountinfo);

// cgroup v1 cpu.shares for a v2 cpu.weight, as systemd maps CPUWeight= (100 -> 1024).
std::uint64_t cpuSharesForWeight(std::int64_t weight);

class WorkLimiter {
 public:
  // Where each configured limit goes. `v2_leaf_controllers`: the controllers
  // the v2 work subtree enables for its leaves (none without cgroup v2).
  // Creates the v1 `phonefarm-work` directories it needs; a limit that no
  // controller can enforce is recorded in unavailable().
  static WorkLimiter open(const WorkLimits& limits, const std::set<std::string>& v2_leaf_controllers);

  // Before the spawn: writes the v2 limits into `v2_leaf` (when given) and
  // creates the execution's v1 cgroups with theirs. Returns the v1 cgroups
  // the leader must join. On error nothing is left behind.
  Result<std::vector<std::filesystem::path>> prepare(const std::string& execution_id,
                                                     const std::optional<std::filesystem::path>& v2_leaf) const;

  // After the end: what the limits did (counters from the v2 leaf, if still
  // there, and from the v1 cgroups).
  LimitHits hits(const std::string& execution_id, const std::optional<std::filesystem::path>& v2_leaf) const;

  // Removes the execution's v1 cgroups (those that exist). A cgroup still
  // holding processes stays, with an error naming it.
  Status release(const std::string& execution_id) const;

  const WorkLimits& limits() const { return limits_; }
  // Limit name -> why it is not enforced.
  const std::map<std::string, std::string>& unavailable() const { return unavailable_; }
  // For /readyz and GET /debug: each configured limit with its value and
  // where it is enforced, or why it is not.
  boost::json::object describe() const;

 private:
  // One limit written as one file.
  struct Placement {
    std::string limit;                            // "pids_max", ...
    std::string file;                             // "pids.max", "memory.limit_in_bytes", ...
    std::string value;                            // as written
    std::optional<std::filesystem::path> v1_dir;  // the v1 phonefarm-work dir; none = the v2 leaf
  };

  WorkLimits limits_;
  std::vector<Placement> placements_;
  std::map<std::string, std::string> unavailable_;
};

}  // namespace phonefarm::exec
