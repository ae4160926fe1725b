// Where an execution keeps its files on disk: the one place that lists them,
// for whatever removes them (retention). Today two directories: the control
// dir state_dir/executions/<execution_id> (the agent's: logs, status.json,
// the shim's env file) and the work dir state_dir/workdirs/<execution_id>
// (the command's working directory, whatever the job wrote). A directory
// added for executions goes into executionDirectories() too.
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

namespace phonefarm::exec {

// state_dir/executions: the parent of every execution's control dir.
std::filesystem::path executionsDir(const std::filesystem::path& state_dir);
// state_dir/workdirs: the parent of every execution's work dir.
std::filesystem::path workDirsDir(const std::filesystem::path& state_dir);
// Every directory that belongs to the execution, each removed whole when
// the execution's files expire. `execution_id` must be a plain name (no '/').
std::vector<std::filesystem::path> executionDirectories(const std::filesystem::path& state_dir,
                                                        std::string_view execution_id);

}  // namespace phonefarm::exec
