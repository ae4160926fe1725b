// Reading execution logs without trusting the execution directory; see
// execution_log.hpp.
#include "agent/api/execution_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::api {
namespace {

using Fd = os::FileDescriptor;

bool isPlainName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

}  // namespace

Result<LogChunk> readExecutionLog(const std::filesystem::path& state_dir, std::string_view execution_id,
                                  std::string_view stream, std::uint64_t offset, const std::vector<uid_t>& owners,
                                  std::size_t max_bytes) {
  if (!isPlainName(execution_id)) return makeError(ErrorKind::kInternal, "bad execution id");
  const std::string file_name = stream == "stderr" ? "stderr.log" : "stdout.log";
  LogChunk chunk;

  // state_dir/executions is the agent's (root-owned, 0711): a path is fine
  // up to there. From the execution directory on, every step is *at.
  const std::filesystem::path executions = state_dir / "executions";
  Fd parent(::open(executions.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (parent.get() < 0) {
    if (errno == ENOENT) return chunk;
    return os::sysError(ErrorKind::kInternal, "open " + executions.string(), errno);
  }
  const std::string exec_name(execution_id);
  Fd dir(::openat(parent.get(), exec_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dir.get() < 0) {
    if (errno == ENOENT) return chunk;
    if (errno == ELOOP || errno == ENOTDIR) {
      return makeError(ErrorKind::kConflict, "the execution directory of " + exec_name +
                                                 " is not a directory; a symbolic link is not followed");
    }
    return os::sysError(ErrorKind::kInternal, "open execution directory " + exec_name, errno);
  }

  Fd file(::openat(dir.get(), file_name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (file.get() < 0) {
    if (errno == ENOENT) return chunk;
    if (errno == ELOOP) {
      return makeError(ErrorKind::kConflict,
                       file_name + " of execution " + exec_name + " is a symbolic link; it is not followed");
    }
    return os::sysError(ErrorKind::kInternal, "open " + file_name + " of execution " + exec_name, errno);
  }
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) return os::sysError(ErrorKind::kInternal, "fstat " + file_name, errno);
  if (!S_ISREG(st.st_mode)) {
    return makeError(ErrorKind::kConflict, file_name + " of execution " + exec_name + " is not a regular file");
  }
  // A hard link to someone else's file (where fs.protected_hardlinks is off)
  // shows up as another owner.
  if (std::find(owners.begin(), owners.end(), st.st_uid) == owners.end()) {
    return makeError(ErrorKind::kConflict,
                     file_name + " of execution " + exec_name + " is not owned by the agent or the work user");
  }
  chunk.exists = true;
  chunk.size = static_cast<std::uint64_t>(st.st_size);
  if (offset >= chunk.size) return chunk;
  const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size - offset, max_bytes));
  chunk.bytes.resize(want);
  std::size_t got = 0;
  int read_errno = 0;
  while (got < want) {
    const ssize_t n = ::pread(file.get(), chunk.bytes.data() + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      read_errno = errno;
      break;
    }
    if (n == 0) break;  // truncated meanwhile
    got += static_cast<std::size_t>(n);
  }
  if (read_errno != 0) {
    return os::sysError(ErrorKind::kInternal, "read " + file_name + " of execution " + exec_name, read_errno);
  }
  chunk.bytes.resize(got);
  return chunk;
}

}  // namespace phonefarm::api
