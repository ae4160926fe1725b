// The exec shim as the ExecStart of a job unit (phonefarm-job@<id>.service,
// the "systemd" launcher of [work] launcher):
//   phonefarm-agent exec-shim --job-unit <execution id> --config /etc/phonefarm-agent/agent.toml
// Both arguments come from the unit file, which only root can write. The
// agent's only say is the argv and env files it leaves in the execution's
// control dir, and those are read as hostile input: the shim takes run_as,
// the state dir, the command prefixes, the env policy and the work limits
// from the root-owned config itself, refuses root, resolves the command
// under the prefixes, refuses an env name the policy refuses (LD_PRELOAD,
// ...), and only then runs as the ordinary exec shim (exec_shim.hpp). A
// compromised agent can start nothing but work as run_as, under the
// prefixes, with no loader or interpreter hook.
//
// Before the command starts, the shim splits its delegated cgroup (the
// unit's, owned by the agent's user through Delegate=yes): it moves itself
// to <unit>/phonefarm-shim, makes <unit>/phonefarm-work/<execution id> with
// the work limits ([work] pids_max, memory_max, cpu_weight) and the command
// joins that leaf before it drops to run_as. Both sub-cgroups are the
// agent's user's, so the agent can cgroup.kill them. When the command has
// ended it reads what the limits did, in that leaf and in the unit's own
// cgroups where systemd enforces TasksMax=/MemoryMax= (cgroup v1 on a
// hybrid host), into status.json's limit_hits: the unit's cgroups go with
// the unit, and the agent turns the counts into the item's note.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "agent/exec/exec_shim.hpp"
#include "common/config/config.hpp"
#include "common/result.hpp"

namespace phonefarm::exec {

inline constexpr const char* kJobUnitFlag = "--job-unit";
// The command line in the control dir: each argument ended by a NUL byte,
// written by the agent (0600), at most kMaxArgvFileBytes.
inline constexpr const char* kArgvFileName = "argv";
inline constexpr std::size_t kMaxArgvFileBytes = 256 * 1024;
inline constexpr std::string_view kShimCgroupName = "phonefarm-shim";

inline constexpr const char* kAfterExitFlag = "--after-exit";

struct JobUnitShimArgs {
  std::filesystem::path config;
  std::string execution_id;
  // The unit's ExecStopPost: the work's tree is gone; open what it left in
  // its work dir to run_as's group (openWorkDirToGroup).
  bool after_exit = false;
};

// Whether the exec-shim arguments ask for the job-unit mode.
bool isJobUnitShim(const std::vector<std::string>& args);
// `args` after "exec-shim": "--job-unit ID --config PATH [--after-exit]" in
// any order.
Result<JobUnitShimArgs> parseJobUnitShimArgs(const std::vector<std::string>& args);

// Writes the command as control_dir/argv (0600) for the job unit's shim.
Status writeShimArgvFile(const std::filesystem::path& control_dir, const std::vector<std::string>& argv);

// The shim's options for one execution, from the config and the argv and env
// files in the execution's control dir (state_dir/executions/<id>): run_as
// must not be root, argv[0] must resolve under allowed_command_prefixes (the
// resolved path is what runs), and every env name must pass the config's env
// policy (env_policy.hpp's refusedCommandEnvNames: names only in the
// refusal). The env file is taken (read and deleted) here, and what was
// checked is what the command gets. Every refusal says why.
Result<ShimOptions> jobUnitShimOptions(const AgentConfig& config, std::string_view execution_id);

// After the work has ended, as run_as (dropped to, every capability
// cleared): adds group rwx to every directory and group rw to every file the
// job left under its work dir, following no link. The agent, a member of
// run_as's group and holding no CAP_SETUID, can then delete the work dir at
// retention (the "direct" launcher's agent does that as run_as instead,
// tree_removal_as_user.hpp). Returns the process's exit code.
int openWorkDirToGroup(const AgentConfig& config, const std::string& execution_id);

// The whole job-unit shim: config, options, the cgroup split with the
// limits, then runExecShim (or, with after_exit, openWorkDirToGroup).
// Returns the process's exit code.
int runJobUnitShim(const JobUnitShimArgs& args);

}  // namespace phonefarm::exec
