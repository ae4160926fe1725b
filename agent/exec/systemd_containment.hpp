// The containment of the "systemd" launcher ([work] launcher = "systemd"):
// each execution is the job unit phonefarm-job@<id>.service (its sandbox in
// systemd/phonefarm-job@.service), started over D-Bus (JobUnits). The tree
// is the unit's cgroup, watched through its cgroup.events like a leaf of the
// agent's own; the job shim splits it into phonefarm-shim and
// phonefarm-work/<id> (job_unit_shim.hpp), both the agent user's through
// Delegate=yes, so a kill is cgroup.kill there (and on the unit's cgroup
// when systemd delegated that file too), with KillUnit as the backstop for
// a shim that has not moved yet. The units are not the agent's children:
// they outlive an agent restart and are adopted from the stored cgroup and
// leader (pid and start time). Executions of the other runtimes (started
// before the launcher was switched) are adopted by `direct`.
#pragma once

#include <memory>

#include "agent/exec/containment.hpp"
#include "agent/exec/job_unit_limits.hpp"
#include "agent/exec/systemd_job_units.hpp"
#include "agent/exec/work_limits.hpp"

namespace phonefarm::exec {

// `direct` (makeContainment) adopts executions of the other runtimes; made on
// first use, so a host with only job units never sets up the agent's own
// work subtree.
using DirectContainmentFactory = std::function<std::unique_ptr<Containment>()>;

// `limits_dropin`: the generated drop-in with the units' copy of the limits
// (job_unit_limits.hpp), read back for describe().
std::unique_ptr<Containment> makeSystemdContainment(
    std::shared_ptr<JobUnits> units, const WorkLimits& limits, DirectContainmentFactory direct,
    const std::filesystem::path& limits_dropin = kGeneratedJobUnitLimits);

}  // namespace phonefarm::exec
