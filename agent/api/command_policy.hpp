// The command allow-list of POST /processes ([work] allowed_command_prefixes,
// docs/design.md "Containment and termination"): which programs the agent agrees to
// run. Consulted at submit time, on the I/O thread (a few realpath(3) calls).
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

#include <optional>
#include <string>
#include <vector>

namespace phonefarm::api {

// nullopt when `program` (an absolute path) may run; otherwise why not, as a
// sentence for a 422 entry (without Pydantic's "Value error, " lead-in), e.g.
// "command /usr/bin/id resolves to /usr/bin/id, which is not under an allowed
// prefix (/opt/phonefarm/jobs/)".
std::optional<std::string> checkCommandAllowed(const std::string& program, const std::vector<std::string>& prefixes);

}  // namespace phonefarm::api
