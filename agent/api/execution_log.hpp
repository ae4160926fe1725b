// readExecutionLog: a byte range of an execution's stdout.log or stderr.log
// (state_dir/executions/<execution_id>/, written by the exec shim as the
// work user). That directory belongs to the work user, so whatever is in it
// is the job's choice: a symlink to /etc/shadow, a FIFO, a hard link to a
// root-only file. The files are therefore opened relative to the directory
// descriptor, without following symlinks at either step (O_NOFOLLOW), without
// blocking (O_NONBLOCK), and read only when fstat says they are regular files
// owned by the user the work runs as (`[work] run_as`, who the shim writes
// them as; the directory itself may belong to the agent).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

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
                                  std::string_view stream, std::uint64_t offset, uid_t owner,
                                  std::size_t max_bytes = kMaxLogChunkBytes);

}  // namespace phonefarm::api
