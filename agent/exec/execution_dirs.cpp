// The directories of an execution; see execution_dirs.hpp.
#include "agent/exec/execution_dirs.hpp"

namespace phonefarm::exec {

std::filesystem::path executionsDir(const std::filesystem::path& state_dir) { return state_dir / "executions"; }

std::filesystem::path workDirsDir(const std::filesystem::path& state_dir) { return state_dir / "workdirs"; }

std::vector<std::filesystem::path> executionDirectories(const std::filesystem::path& state_dir,
                                                        std::string_view execution_id) {
  if (execution_id.empty() || execution_id == "." || execution_id == ".." ||
      execution_id.find('/') != std::string_view::npos || execution_id.find('\0') != std::string_view::npos) {
    return {};
  }
  const std::filesystem::path name(execution_id);
  return {executionsDir(state_dir) / name, workDirsDir(state_dir) / name};
}

}  // namespace phonefarm::exec
