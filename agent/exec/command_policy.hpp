// The command allow-list ([work] allowed_command_prefixes, README "Trust
// boundary"): which programs the agent agrees to run. Consulted at submit
// time by POST /processes and again at launch by the executor, which then
// executes the resolved path, so a symlink swapped in between (or a path
// through /proc/self/cwd) cannot run something else. On the I/O thread (a
// few realpath(3) calls).
//
// Rules, in the order they are checked:
// - `program` is resolved with realpath(3): symlinks and ".." are followed, so
//   "/opt/phonefarm/jobs/../../../bin/sh" and a symlink inside a prefix that
//   points outside it are judged by where they really lead. A program that
//   does not exist or cannot be resolved is rejected ("command not found: /x
//   (No such file or directory)").
// - The resolved path must lie under one of `prefixes`. Each prefix is itself
//   resolved with realpath(3) when it exists (so "/bin/" works where /bin is a
//   symlink to /usr/bin), otherwise it is normalised lexically. Matching is on
//   whole path components, and a trailing '/' makes no difference: "/opt/jobs"
//   and "/opt/jobs/" both allow "/opt/jobs/a.sh" and "/opt/jobs/sub/b" but not
//   "/opt/jobsX/a.sh". The prefix "/" allows everything; an empty list allows
//   nothing.
// - The resolved path must be a regular file with at least one execute bit
//   (user, group or other) set. Whether the work user may actually execute it
//   is left to the spawn.
// The filesystem is read at each call (nothing is cached), so a prefix
// directory created after the agent started counts from then on.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::exec {

// nullopt when `program` (an absolute path) may run; otherwise why not, as a
// sentence for a 422 entry (without Pydantic's "Value error, " lead-in), e.g.
// "command /usr/bin/id resolves to /usr/bin/id, which is not under an allowed
// prefix (/opt/phonefarm/jobs/)".
std::optional<std::string> checkCommandAllowed(const std::string& program, const std::vector<std::string>& prefixes);

// The same rules, giving the resolved absolute path to execute; the refusal
// is a kInvalid Error with the same sentence.
Result<std::string> resolveAllowedCommand(const std::string& program, const std::vector<std::string>& prefixes);

// The first directory, of `prefix` itself and every directory above it, that
// the user `uid` (primary group `gid`, supplementary `groups`) could write to,
// so could swap a command between the check and the exec; nullopt when there
// is none. A sticky directory (/tmp) counts only when the next component on
// the way down is the user's own. Missing directories are not a finding.
std::optional<std::string> writableDirOnPrefix(const std::string& prefix, uid_t uid, gid_t gid,
                                               const std::vector<gid_t>& groups);

// writableDirOnPrefix for every prefix, for the named run_as user (whose
// groups are looked up): one sentence naming the prefix and the writable
// directory, or nullopt. An unknown user is not a finding (nothing can run).
std::optional<std::string> checkPrefixesNotWritableBy(const std::vector<std::string>& prefixes,
                                                      const std::string& run_as);

// The resolved command itself and every directory above it, for the named
// run_as user: a command file run_as may write (or owns), or a directory on
// its path run_as may write, lets one job change what another job runs, even
// under a prefix that start-up found safe. One sentence naming the file or
// directory, or nullopt (also for an unknown user). Checked at each launch.
std::optional<std::string> checkCommandNotWritableBy(const std::string& resolved, const std::string& run_as);

// run_as must not be the agent's own uid (`self`, geteuid()): a job of that
// uid could signal, ptrace or replace its supervisor (the exec shim) and the
// agent itself. One sentence naming run_as and the uid, or nullopt (also for
// an unknown user: nothing can run). check-config and start-up refuse it.
std::optional<std::string> checkRunAsNotSelf(const std::string& run_as, uid_t self);

}  // namespace phonefarm::exec
