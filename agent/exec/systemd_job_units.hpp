// The systemd seam of the "systemd" work launcher ([work] launcher): each
// execution runs as an instance of the template unit phonefarm-job@.service
// (systemd/phonefarm-job@.service), which carries the job's sandbox, not the
// agent's. The agent starts, signals and stops instances over D-Bus (sd-bus,
// org.freedesktop.systemd1.Manager StartUnit, KillUnit, StopUnit); the
// package's polkit rule lets the agent's user do that for these unit names
// only. The unit's ExecStart is the exec shim in job-unit mode
// (job_unit_shim.hpp), which reads the command from the execution's control
// dir and enforces run_as and the command prefixes itself.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace phonefarm::exec {

inline constexpr std::string_view kJobUnitPrefix = "phonefarm-job@";
inline constexpr std::string_view kJobUnitSuffix = ".service";

// "phonefarm-job@<execution_id>.service". The id must match the polkit
// rule's pattern, [A-Za-z0-9_-]{1,64}: anything else is refused, so no name
// can reach another unit or need escaping.
Result<std::string> jobUnitName(std::string_view execution_id);
bool isValidJobUnitInstance(std::string_view execution_id);

// The cgroup systemd gives an instance (its default slice,
// system-phonefarm\x2djob.slice), relative to the cgroup2 mount.
std::string jobUnitCgroup(std::string_view unit);

// A started instance, as systemd reports it once the start job is done.
struct JobUnitStarted {
  pid_t main_pid = 0;         // the exec shim; 0 when it has already exited
  std::string control_group;  // relative to the cgroup2 mount; "" when the unit is gone already
};

// The three calls the launcher makes. The real one speaks to the system bus;
// unit tests use a fake.
class JobUnits {
 public:
  virtual ~JobUnits() = default;
  // StartUnit(unit, "fail"), then waits (at most `timeout`) for the start
  // job to end (Type=exec: the shim has been exec'd) and reads MainPID and
  // ControlGroup. A failed start job is an error naming its result.
  virtual Result<JobUnitStarted> start(const std::string& unit, std::chrono::milliseconds timeout) = 0;
  // KillUnit(unit, "all", sig): every process of the unit.
  virtual Status kill(const std::string& unit, int sig) = 0;
};

// The system bus, connected on first use (and again after an error).
std::unique_ptr<JobUnits> makeSystemBusJobUnits();

}  // namespace phonefarm::exec
