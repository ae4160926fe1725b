// Where an execution keeps its files on disk: the one place that lists them,
// for whatever removes them (retention). Today that is one directory,
// state_dir/executions/<execution_id> (logs, status.json, cancel.json, and
// the job's working directory); a directory added for executions (e.g. a
// separate working directory) goes into executionDirectories() too.
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

namespace phonefarm::exec {

// state_dir/executions: the parent of every execution's own directory.
std::filesystem::path executionsDir(const std::filesystem::path& state_dir);
// Every directory that belongs to the execution, each removed whole when
// the execution's files expire. `execution_id` must be a plain name (no '/').
std::vector<std::filesystem::path> executionDirectories(const std::filesystem::path& state_dir,
                                                        std::string_view execution_id);

}  // namespace phonefarm::exec
