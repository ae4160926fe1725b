// The files through which an execution talks across process boundaries and
// agent restarts: status.json (written by the exec shim when the command has
// exited, read by the agent when the execution's cgroup is empty — possibly
// by an agent that was restarted meanwhile) and cancel.json (the soft-cancel
// notice the agent writes for the command, found via PHONEFARM_CANCEL_FILE).
// Both are replaced atomically: a reader sees the old file or the whole new
// one, never a torn write, even across a power loss.
#pragma once

#include <sys/types.h>

#include <boost/json/object.hpp>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "agent/exec/work_limits.hpp"
#include "common/result.hpp"

namespace phonefarm::exec {

inline constexpr const char* kStatusFileName = "status.json";
inline constexpr const char* kCancelFileName = "cancel.json";
inline constexpr const char* kStdoutLogName = "stdout.log";
inline constexpr const char* kStderrLogName = "stderr.log";

// How the leader command of one execution ended. Exactly one of exit_code and
// signal is set for a command that ran; a command that could not be executed
// has exit_code 127 and `error` saying why.
struct ExecStatus {
  pid_t pid = 0;
  std::optional<int> exit_code;
  std::optional<std::string> signal;  // "SIGKILL", see signal_names.hpp
  std::int64_t started_at = 0;        // wall-clock ms since the epoch
  std::int64_t ended_at = 0;
  std::optional<std::string> error;
  // The log relay (log_relay.hpp): the cap it applied to each log, and the
  // bytes of each stream it dropped past it. 0 from a shim before the relay.
  std::uint64_t log_max_bytes = 0;
  std::uint64_t stdout_dropped = 0;
  std::uint64_t stderr_dropped = 0;
  // What the work limits did, as the job unit's shim read them from its
  // unit's cgroups when the command ended (job_unit_shim.hpp): the unit's
  // cgroup goes with the unit, so the agent could not read them later.
  // Absent from the direct launcher's shim (the agent reads its own leaf).
  std::optional<LimitHits> limit_hits = std::nullopt;

  bool operator==(const ExecStatus&) const = default;
};

// nullopt when the shim has not written status.json (still running, or died
// before it could); an error when the file is unreadable or malformed.
Result<std::optional<ExecStatus>> readExecStatus(const std::filesystem::path& exec_dir);

// Atomically replaces exec_dir/status.json (mode 0640).
Status writeExecStatus(const std::filesystem::path& exec_dir, const ExecStatus& status);

// Atomically replaces dir/cancel.json with `mode`: 0600 for the agent's own
// record in the control dir, 0444 for the read-only copy in the work dir,
// which the command finds through PHONEFARM_CANCEL_FILE. The work dir is
// writable by the work user: the temp file is created O_EXCL|O_NOFOLLOW
// after an unlink, so nothing planted there can redirect or block the write.
Status writeCancelFile(const std::filesystem::path& dir, const boost::json::object& notice, mode_t mode);

}  // namespace phonefarm::exec
