// Removing a tree as the work user. An agent that is not root (the unit runs
// it as `phonefarm`) cannot delete what a job created in its execution
// directory when that is not writable by the agent's group: a subdirectory
// the job made (0755 by umask, or locked with chmod 000) belongs to
// `run_as`, whose files only `run_as` may unlink. Retention then runs
// `phonefarm-agent remove-tree --run-as USER DIR`: a child that drops to
// that user (groups, gid, uid, then every capability, as the exec shim
// does) and empties DIR there (os::removeTreeContents); the agent then
// removes DIR itself. It can do nothing the job could not do itself, and it
// still follows no link.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/os/tree_removal.hpp"
#include "common/result.hpp"

namespace phonefarm::exec {

inline constexpr const char* kRemoveTreeSubcommand = "remove-tree";

// The subcommand: args after "remove-tree" ("--run-as", USER, DIR). Exit 0
// when DIR is empty, 1 when something could not be removed (why on stderr),
// 2 on a usage error, 3 when the privileges could not be dropped.
int runRemoveTreeSubcommand(const std::vector<std::string>& args);

// Runs `agent_binary remove-tree --run-as run_as dir`, waits for it, then
// removes what is left (the emptied `dir`) as the agent. Blocking: on a
// worker thread.
Result<os::RemovedTree> removeTreeAsUser(const std::filesystem::path& agent_binary, const std::string& run_as,
                                         const std::filesystem::path& dir);

}  // namespace phonefarm::exec
