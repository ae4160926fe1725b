// readExecutionLog: a byte range of an execution's stdout.log or stderr.log
// in its control directory (state_dir/executions/<execution_id>/, the
// agent's, 0700; the exec shim opens the logs there as the agent's user and
// hands the command only the descriptors). Executions started by an agent
// before the control/work split had that directory writable by the work
// user, so the files are still opened relative to the directory descriptor,
// without following symlinks at either step (O_NOFOLLOW), without blocking
// (O_NONBLOCK), and read only when fstat says they are regular files owned
// by one of `owners` (the agent's uid; the work user's for those older
// executions).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::api {

inline constexpr std::size_t kMaxLogChunkBytes = 1024 * 1024;

struct LogChunk {
  std::string bytes;       // from `offset`, at most `max_bytes`
  std::uint64_t size = 0;  // the file's size when read (0 when it does not exist yet)
  bool exists = false;
};

// `stream` is "stdout" or "stderr". A missing directory or file is an empty
// chunk (the execution has not written it yet); a file the job replaced by
// something else is kConflict; other failures kInternal.
Result<LogChunk> readExecutionLog(const std::filesystem::path& state_dir, std::string_view execution_id,
                                  std::string_view stream, std::uint64_t offset, const std::vector<uid_t>& owners,
                                  std::size_t max_bytes = kMaxLogChunkBytes);

}  // namespace phonefarm::api
