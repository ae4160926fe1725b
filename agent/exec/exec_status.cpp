// Reading and atomically writing status.json and cancel.json (see the header).
// The atomic replace is the classic sequence: write a temp file, fsync it,
// rename it over the target, fsync the directory so the rename itself is
// durable. It runs relative to a directory fd because the exec dir belongs to
// the unprivileged run_as user while cancel.json is written by the root agent.
#include "agent/exec/exec_status.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::exec {
namespace {

namespace json = boost::json;

// status.json is a few hundred bytes; the cap keeps a file planted by the
// work's user from making the agent read something huge.
constexpr std::size_t kMaxStatusBytes = 64 * 1024;
// The largest byte count taken (2^62): more than any log or file system holds.
constexpr std::int64_t kMaxByteCount = std::int64_t{1} << 62;

Status writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return os::sysError("write");
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return okStatus();
}

Status writeFileAtomically(const std::filesystem::path& dir, const std::string& name, std::string_view content,
                           mode_t mode) {
  os::FileDescriptor dirfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd) return os::sysError("open " + dir.string());
  const std::string tmp = name + ".tmp";
  const std::string where = (dir / tmp).string();
  // Unlink then O_EXCL|O_NOFOLLOW: a symlink or file planted under the temp
  // name can neither redirect a root write nor be written through.
  if (::unlinkat(dirfd.get(), tmp.c_str(), 0) != 0 && errno != ENOENT) return os::sysError("unlink " + where);
  os::FileDescriptor fd(::openat(dirfd.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return os::sysError("create " + where);
  auto fail = [&](Error e) -> Status {
    ::unlinkat(dirfd.get(), tmp.c_str(), 0);
    return e;
  };
  // The umask must not narrow the mode the reader relies on.
  if (::fchmod(fd.get(), mode) != 0) return fail(os::sysError("chmod " + where));
  if (auto st = writeAll(fd.get(), content); !st)
    return fail(makeError(st.error().kind, st.error().message + " " + where));
  if (::fsync(fd.get()) != 0) return fail(os::sysError("fsync " + where));
  if (fd.release() != 0) return fail(os::sysError("close " + where));
  if (::renameat(dirfd.get(), tmp.c_str(), dirfd.get(), name.c_str()) != 0) {
    return fail(os::sysError("rename " + where));
  }
  if (::fsync(dirfd.get()) != 0) return os::sysError("fsync " + dir.string());
  return okStatus();
}

Error malformed(const std::string& why) { return makeError(ErrorKind::kInvalid, "malformed status.json: " + why); }

Result<std::int64_t> requiredInt(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return malformed(std::string(key) + " missing");
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return static_cast<std::int64_t>(v->get_uint64());
  }
  return malformed(std::string(key) + " is not an integer");
}

// Absent means 0 (a status.json of a shim before the log relay); present, a
// whole number of bytes no larger than any file can be.
Result<std::uint64_t> optionalByteCount(const json::object& o, std::string_view key) {
  if (!o.contains(key)) return std::uint64_t{0};
  auto v = requiredInt(o, key);
  if (!v) return v.error();
  if (*v < 0 || *v > kMaxByteCount) return malformed(std::string(key) + " out of range");
  return static_cast<std::uint64_t>(*v);
}

// Present-and-null and absent both mean "not set"; anything else must be a string.
Result<std::optional<std::string>> optionalString(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<std::string>{};
  if (!v->is_string()) return malformed(std::string(key) + " is not a string");
  return std::optional<std::string>(std::string(v->get_string()));
}

Result<ExecStatus> parseStatus(std::string_view text) {
  boost::system::error_code ec;
  const json::value doc = json::parse(text, ec);
  if (ec) return malformed(ec.message());
  if (!doc.is_object()) return malformed("not a JSON object");
  const json::object& o = doc.get_object();
  ExecStatus status;
  auto pid = requiredInt(o, "pid");
  if (!pid) return pid.error();
  if (*pid <= 0 || *pid > std::numeric_limits<pid_t>::max()) return malformed("pid out of range");
  status.pid = static_cast<pid_t>(*pid);
  if (!o.contains("exit_code")) return malformed("exit_code missing");
  if (!o.at("exit_code").is_null()) {
    auto code = requiredInt(o, "exit_code");
    if (!code) return code.error();
    if (*code < 0 || *code > 255) return malformed("exit_code out of range");
    status.exit_code = static_cast<int>(*code);
  }
  auto signal = optionalString(o, "signal");
  if (!signal) return signal.error();
  status.signal = std::move(*signal);
  auto started = requiredInt(o, "started_at");
  if (!started) return started.error();
  auto ended = requiredInt(o, "ended_at");
  if (!ended) return ended.error();
  status.started_at = *started;
  status.ended_at = *ended;
  auto error = optionalString(o, "error");
  if (!error) return error.error();
  status.error = std::move(*error);
  for (const auto& [key, field] : {std::pair{"log_max_bytes", &ExecStatus::log_max_bytes},
                                   std::pair{"stdout_dropped", &ExecStatus::stdout_dropped},
                                   std::pair{"stderr_dropped", &ExecStatus::stderr_dropped}}) {
    auto count = optionalByteCount(o, key);
    if (!count) return count.error();
    status.*field = *count;
  }
  if (const json::value* hits = o.if_contains("limit_hits"); hits != nullptr && !hits->is_null()) {
    if (!hits->is_object()) return malformed("limit_hits is not an object");
    LimitHits read;
    for (const auto& [key, field] :
         {std::pair{"oom_kills", &LimitHits::oom_kills}, std::pair{"pids_refused", &LimitHits::pids_refused}}) {
      auto count = optionalByteCount(hits->get_object(), key);
      if (!count) return count.error();
      read.*field = *count;
    }
    status.limit_hits = read;
  }
  return status;
}

}  // namespace

Result<std::optional<ExecStatus>> readExecStatus(const std::filesystem::path& exec_dir) {
  const std::filesystem::path path = exec_dir / kStatusFileName;
  // The work's user can write the execution directory: whatever is found
  // under this name is opened without blocking (a FIFO would freeze the
  // event loop), without following a link, and read only if it is a regular
  // file of bounded size. Anything else is a malformed status, not a hang.
  os::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    if (errno == ENOENT) return std::optional<ExecStatus>{};
    if (errno == ELOOP) return malformed("a symbolic link");
    return os::sysError("open " + path.string());
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return os::sysError("stat " + path.string());
  if (!S_ISREG(st.st_mode)) return malformed("not a regular file");
  if (st.st_size > static_cast<off_t>(kMaxStatusBytes)) return malformed("larger than 64 KiB");
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return os::sysError("read " + path.string());
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxStatusBytes) return malformed("larger than 64 KiB");
  }
  auto status = parseStatus(text);
  if (!status) return status.error();
  return std::optional<ExecStatus>(std::move(*status));
}

Status writeExecStatus(const std::filesystem::path& exec_dir, const ExecStatus& status) {
  json::object o;
  o["pid"] = status.pid;
  o["exit_code"] = status.exit_code ? json::value(*status.exit_code) : json::value(nullptr);
  o["signal"] = status.signal ? json::value(*status.signal) : json::value(nullptr);
  o["started_at"] = status.started_at;
  o["ended_at"] = status.ended_at;
  if (status.error) o["error"] = *status.error;
  o["log_max_bytes"] = status.log_max_bytes;
  o["stdout_dropped"] = status.stdout_dropped;
  o["stderr_dropped"] = status.stderr_dropped;
  if (status.limit_hits) {
    o["limit_hits"] =
        json::object{{"oom_kills", status.limit_hits->oom_kills}, {"pids_refused", status.limit_hits->pids_refused}};
  }
  return writeFileAtomically(exec_dir, kStatusFileName, json::serialize(o) + "\n", 0640);
}

Status writeCancelFile(const std::filesystem::path& dir, const boost::json::object& notice, mode_t mode) {
  return writeFileAtomically(dir, kCancelFileName, json::serialize(notice) + "\n", mode);
}

}  // namespace phonefarm::exec
