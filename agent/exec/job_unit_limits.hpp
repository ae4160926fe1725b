// The work limits of the job units (phonefarm-job@.service), as systemd
// enforces them: TasksMax=, MemoryMax= and CPUWeight= in a drop-in that a
// systemd generator writes from the root-owned config at boot and at every
// `systemctl daemon-reload`:
//   /usr/lib/systemd/system-generators/phonefarm-agent-job-limits
//     -> phonefarm-agent job-unit-limits --config /etc/phonefarm-agent/agent.toml --out <normal dir>
//     -> <normal dir>/phonefarm-job@.service.d/50-limits.conf
// systemd maps them to whatever hierarchy carries the controller (cgroup v1
// on hybrid hosts, where the unit's delegated v2 cgroup has no pids or
// memory controller and the job shim's own limits cannot be written). A
// generator must never fail the boot: with an unreadable or invalid config
// the subcommand writes nothing, says why in one line and exits 0.
//
// The agent reads the generated drop-in back (describeJobUnitDropIn) to say
// in /readyz and GET /debug what the units carry, and whether that is stale
// (the config changed without a daemon-reload: an agent restart does not
// re-run generators).
#pragma once

#include <boost/json/object.hpp>
#include <filesystem>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/exec/work_limits.hpp"
#include "common/result.hpp"

namespace phonefarm::exec {

inline constexpr const char* kJobUnitLimitsSubcommand = "job-unit-limits";
// Relative to the generator's output dir.
inline constexpr const char* kJobUnitLimitsDropIn = "phonefarm-job@.service.d/50-limits.conf";
// Where systemd's "normal" generator dir puts it.
inline constexpr const char* kGeneratedJobUnitLimits = "/run/systemd/generator/phonefarm-job@.service.d/50-limits.conf";
// The drop-in is a few short lines: a larger file is not ours.
inline constexpr std::size_t kMaxDropInBytes = 4096;
inline constexpr std::string_view kDropInStale = "stale: run systemctl daemon-reload";

// The drop-in's text for `limits`: a [Service] section with one directive
// per configured limit, each a decimal number (an unset or non-positive
// value writes no directive).
std::string jobUnitLimitsDropIn(const WorkLimits& limits);

// The limits a drop-in of jobUnitLimitsDropIn's form carries. Comments,
// blank lines and the [Service] header are skipped; any other line, or a
// value that is not a decimal number, is an error.
Result<WorkLimits> parseJobUnitLimitsDropIn(std::string_view text);

struct JobUnitLimitsArgs {
  std::filesystem::path config;
  std::filesystem::path out;
};

// `args` after "job-unit-limits": "--config PATH --out DIR" in any order,
// then systemd's normal/early/late dirs when run as a generator
// (`--out` may then be left out: the normal dir is used).
Result<JobUnitLimitsArgs> parseJobUnitLimitsArgs(const std::vector<std::string>& args);

// The subcommand: reads the config and writes out/kJobUnitLimitsDropIn
// (atomically, 0644). On any failure writes nothing, prints one line to
// `err` and still returns 0 (a generator never fails the boot).
int runJobUnitLimits(const std::vector<std::string>& args, std::ostream& err);

// For work.limits in /readyz and GET /debug: "unit_dropin" ("current",
// kDropInStale, "missing: ..." or "unreadable: ...") and, when readable,
// "unit" (what the drop-in carries: TasksMax, MemoryMax, CPUWeight).
// The read is non-blocking, follows no link and stops at kMaxDropInBytes.
boost::json::object describeJobUnitDropIn(const std::filesystem::path& dropin, const WorkLimits& configured);

// work.limits in /readyz and GET /debug under launcher = "systemd": what
// describeJobUnitDropIn says and, per configured limit, its "value" and
// where it is enforced: "enforced_by": "unit" with the "directive" the
// drop-in carries it as (systemd applies it to each job unit, through
// cgroup v1 on a hybrid host), plus "leaf_file" when the job shim also
// writes it into the work's v2 leaf (`leaf_controllers`: system.slice's
// cgroup v2 controllers); "enforced_by": "job shim" when only the leaf has
// it; "unavailable" and why when neither does.
boost::json::object describeJobUnitLimits(const std::filesystem::path& dropin, const WorkLimits& configured,
                                          const std::set<std::string>& leaf_controllers);

}  // namespace phonefarm::exec
