// CgroupTree: the cgroup v2 side of containment (docs/design.md, "Containment and
// termination"). The agent owns one managed directory, `<root>/phonefarm-work`,
// and gives every execution its own leaf below it; the spawner starts the
// leader directly inside the leaf (process_spawner.hpp), so the whole process
// tree, setsid and double-fork escapees included, stays in that leaf.
// Termination is `killCgroup`; the end of an execution is the leaf reporting
// `populated 0`, observed without polling through `CgroupEventsWatch`, whose fd
// the executor puts on its event loop.
//
// Everything here is a thin layer over cgroupfs files; errors carry the path
// and the errno text. No event loop types: callers get file descriptors.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::exec {

// The cgroup v2 directory the agent may manage. `configured` non-empty: that
// directory, which must be on a cgroup2 filesystem. Empty: our own cgroup
// (the "0::" line of /proc/self/cgroup) under the cgroup2 mount found in
// /proc/self/mountinfo, i.e. what systemd `Delegate=yes` hands us. Either way
// the directory must be writable (probed by creating and removing a child);
// otherwise the error says why and the caller falls back to process groups.
Result<std::filesystem::path> detectCgroupRoot(const std::string& configured);

// A cgroup named as in /proc/<pid>/cgroup's "0::" line (or systemd's
// ControlGroup), as a directory under the cgroup2 mount we see.
Result<std::filesystem::path> cgroup2Dir(const std::string& cgroup);

class CgroupTree {
 public:
  // The managed subdirectory's name. The agent never joins it: cgroup v2's
  // no-internal-processes rule would stop controllers from being enabled for
  // the leaves if it held processes itself.
  static constexpr std::string_view kManagedDirName = "phonefarm-work";

  // Creates `<root>/phonefarm-work` if missing and tries to enable the `pids`,
  // `memory` and `cpu` controllers for its leaves (the work limits,
  // work_limits.hpp). A missing or refused controller is not an error
  // (containment does not depend on it); see leafControllers().
  static Result<CgroupTree> open(const std::filesystem::path& root);

  // mkdir `<dir>/<name>`. Names are [A-Za-z0-9._-]{1,200}, starting with a
  // letter or digit, without "..": a name can never reach outside the managed
  // directory. An existing leaf (or a name taken by a cgroupfs interface file)
  // is a kConflict error: it may still hold an earlier execution's processes.
  Result<std::filesystem::path> createLeaf(std::string_view name);

  // rmdir of a leaf directly under dir(), after the (empty) sub-cgroups the
  // work may have created in it. A populated cgroup cannot be removed: EBUSY
  // comes back as a kConflict error.
  Status removeLeaf(const std::filesystem::path& leaf);

  // Leaves that exist now, sorted, so a restarted agent can re-adopt them.
  std::vector<std::filesystem::path> leaves() const;

  const std::filesystem::path& dir() const { return dir_; }

  // Empty when leaves get the `pids` controller; otherwise why not.
  const std::optional<std::string>& pidsControllerError() const { return pids_error_; }
  // The controllers enabled for the leaves (of pids, memory, cpu).
  const std::set<std::string>& leafControllers() const { return leaf_controllers_; }

 private:
  CgroupTree(std::filesystem::path dir, std::optional<std::string> pids_error, std::set<std::string> leaf_controllers)
      : dir_(std::move(dir)), pids_error_(std::move(pids_error)), leaf_controllers_(std::move(leaf_controllers)) {}

  std::filesystem::path dir_;
  std::optional<std::string> pids_error_;
  std::set<std::string> leaf_controllers_;
};

// `<cgroup>/cgroup.events`. A file without a "populated" line is an error.
// A cgroupfs file (cgroup v1 or v2) read whole, and one value written in a
// single write(2), which is how cgroupfs takes each command.
Result<std::string> readCgroupFile(const std::filesystem::path& path);
Status writeCgroupFile(const std::filesystem::path& path, std::string_view data);

// A /proc/self/mountinfo field with its \ooo escapes (space, tab, newline,
// backslash) decoded.
std::string unescapeMountField(std::string_view field);

struct CgroupEvents {
  bool populated = false;      // a process lives in the cgroup or below it
  std::optional<bool> frozen;  // no "frozen" line before kernel 5.2
};
Result<CgroupEvents> readCgroupEvents(const std::filesystem::path& cgroup);

// The pids in `<cgroup>/cgroup.procs`: this cgroup's own, none from below.
Result<std::vector<pid_t>> readCgroupProcs(const std::filesystem::path& cgroup);

// "populated N" from `<leaf>/cgroup.events`: true while any process lives in
// the leaf or in a cgroup below it.
Result<bool> isPopulated(const std::filesystem::path& leaf);

// Every pid in `<leaf>/cgroup.procs` and in the sub-cgroups the work may have
// created below it. A snapshot: use it for reports, not to signal by pid.
Result<std::vector<pid_t>> cgroupPids(const std::filesystem::path& leaf);

// Bounds on the re-check loop of the kill functions. Each round signals the
// whole tree again, then waits (on cgroup.events, not a sleep) up to
// `round_wait` for `populated 0`. A fork that races a kill lands in the
// cgroup within microseconds, so short rounds catch it; the tree's exit
// itself (tens of ms for 100 processes) is left to the CgroupEventsWatch so
// the caller's event loop is blocked at most about max_rounds * round_wait.
struct CgroupKillOptions {
  int max_rounds = 3;
  std::chrono::milliseconds round_wait{5};
};

// Kills everything in the leaf (sub-cgroups included): `cgroup.kill`, then
// re-check `populated` and write it again, because on older kernels a fork
// racing the kill can leave a child behind. Without `cgroup.kill` (kernel <
// 5.14) falls back to killCgroupByFreezing. Returns once the kill has been
// issued; the tree may still be exiting, which the CgroupEventsWatch reports.
Status killCgroup(const std::filesystem::path& leaf, const CgroupKillOptions& options = {});

// The pre-5.14 way: freeze the leaf (so nothing can fork or exit while we
// look), SIGKILL every pid in it through a pidfd, thaw so the kills land.
// Public so tests cover it on kernels that have cgroup.kill.
Status killCgroupByFreezing(const std::filesystem::path& leaf, const CgroupKillOptions& options = {});

// inotify on `<leaf>/cgroup.events`: its fd becomes readable whenever the
// file changes (populated or frozen flipped). Level state is never taken from
// the event itself: drainAndCheckPopulated() empties the queue and then reads
// the file, so no transition can be missed between the two.
class CgroupEventsWatch {
 public:
  static Result<CgroupEventsWatch> open(const std::filesystem::path& leaf);

  CgroupEventsWatch(CgroupEventsWatch&& other) noexcept;
  CgroupEventsWatch& operator=(CgroupEventsWatch&& other) noexcept;
  CgroupEventsWatch(const CgroupEventsWatch&) = delete;
  CgroupEventsWatch& operator=(const CgroupEventsWatch&) = delete;
  ~CgroupEventsWatch();

  // Non-blocking and close-on-exec; owned by this object.
  int fd() const { return fd_; }
  const std::filesystem::path& leaf() const { return leaf_; }

  // Reads every pending inotify event, then returns the current populated
  // state. Fails with kNotFound once the leaf has been removed.
  Result<bool> drainAndCheckPopulated();

 private:
  CgroupEventsWatch(int fd, std::filesystem::path leaf) : fd_(fd), leaf_(std::move(leaf)) {}

  int fd_ = -1;
  std::filesystem::path leaf_;
};

}  // namespace phonefarm::exec
