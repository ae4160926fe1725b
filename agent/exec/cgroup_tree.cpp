// Implementation of cgroup_tree.hpp: cgroupfs reads and writes, root
// detection from /proc/self/{cgroup,mountinfo}, the kill loops and the
// inotify watch on cgroup.events.
#include "agent/exec/cgroup_tree.hpp"

#include <fcntl.h>
#include <linux/magic.h>  // CGROUP2_SUPER_MAGIC
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <iterator>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "agent/exec/process_spawner.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::exec {
namespace fs = std::filesystem;
namespace {

bool hasWord(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  return std::find(std::istream_iterator<std::string>(in), {}, word) != std::istream_iterator<std::string>();
}

Status checkCgroup2Dir(const fs::path& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return os::sysError("stat " + dir.string(), errno);
  if (!S_ISDIR(st.st_mode)) return makeError(ErrorKind::kInvalid, dir.string() + " is not a directory");
  struct statfs sfs {};
  if (::statfs(dir.c_str(), &sfs) != 0) return os::sysError("statfs " + dir.string(), errno);
  if (sfs.f_type != CGROUP2_SUPER_MAGIC) {
    return makeError(ErrorKind::kUnavailable, dir.string() + " is not on a cgroup2 filesystem");
  }
  return okStatus();
}

Status probeWritable(const fs::path& dir) {
  const auto probe = dir / ("phonefarm-probe-" + std::to_string(::getpid()));
  if (::mkdir(probe.c_str(), 0755) != 0 && errno != EEXIST) {
    return os::sysError("cgroup " + dir.string() + " is not writable: mkdir " + probe.string(), errno);
  }
  if (::rmdir(probe.c_str()) != 0) return os::sysError("rmdir " + probe.string(), errno);
  return okStatus();
}

}  // namespace

Result<fs::path> cgroup2Dir(const std::string& cgroup) {
  const std::string* own = &cgroup;
  auto mountinfo = readCgroupFile("/proc/self/mountinfo");
  if (!mountinfo) return mountinfo.error();
  std::istringstream mounts(*mountinfo);
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string field; fields >> field;) f.push_back(field);
    const auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || dash + 1 == f.end() || *(dash + 1) != "cgroup2") continue;
    const std::string root = unescapeMountField(f[3]);
    const std::string mount_point = unescapeMountField(f[4]);
    std::string rest;
    if (root == "/") {
      rest = *own;
    } else if (*own == root || own->rfind(root + "/", 0) == 0) {
      rest = own->substr(root.size());
    } else {
      continue;
    }
    // operator/ with an absolute right side would discard the mount point.
    rest.erase(0, rest.find_first_not_of('/'));
    return (fs::path(mount_point) / rest).lexically_normal();
  }
  return makeError(ErrorKind::kUnavailable,
                   "no cgroup2 mount containing the cgroup " + *own + " in /proc/self/mountinfo");
}

namespace {

// Our cgroup as a directory: the "0::" path of /proc/self/cgroup, located
// under the cgroup2 mount whose root contains it (mount roots differ from "/"
// inside containers and cgroup namespaces).
Result<fs::path> ownCgroupDir() {
  auto cgroups = readCgroupFile("/proc/self/cgroup");
  if (!cgroups) return cgroups.error();
  std::optional<std::string> own;
  std::istringstream lines(*cgroups);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("0::", 0) == 0) own = line.substr(3);
  }
  if (!own) return makeError(ErrorKind::kUnavailable, "no cgroup v2 (no 0:: line in /proc/self/cgroup)");
  return cgroup2Dir(*own);
}

// Starting a process in a leaf (clone3 CLONE_INTO_CGROUP, like a write to
// cgroup.procs) also needs write access to cgroup.procs of the nearest cgroup
// holding both the agent and the leaf. As root that is a given; as the
// unprivileged service user it holds when systemd's Delegate=yes chowned the
// agent's own cgroup (and its cgroup.procs) to User=, and the leaves are
// below it. A mkdir alone does not prove it: a directory chowned without its
// cgroup.procs would fail every start.
Status probeCanStartIn(const fs::path& dir) {
  auto own = ownCgroupDir();
  if (!own) return okStatus();  // not told where we are: the spawn reports it
  fs::path common;
  for (auto a = own->begin(), b = dir.begin(); a != own->end() && b != dir.end() && *a == *b; ++a, ++b) common /= *a;
  if (!checkCgroup2Dir(common)) return okStatus();  // e.g. two mounts of the hierarchy: cannot tell
  const auto procs = common / "cgroup.procs";
  if (::faccessat(AT_FDCWD, procs.c_str(), W_OK, AT_EACCESS) != 0) {
    return os::sysError("cgroup " + dir.string() + " cannot take work: " + procs.string() +
                            " (the agent's and the work's common cgroup) is not writable; with systemd, Delegate=yes "
                            "hands it to User=",
                        errno);
  }
  return okStatus();
}

Status validateLeafName(std::string_view name) {
  constexpr std::string_view kAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  // A leading alphanumeric also keeps out ".", hidden names and "-x".
  const bool ok = !name.empty() && name.size() <= 200 && kAlnum.find(name[0]) != std::string_view::npos &&
                  name.find_first_not_of(std::string(kAlnum) + "._-") == std::string_view::npos &&
                  name.find("..") == std::string_view::npos;
  if (!ok) return makeError(ErrorKind::kInvalid, "invalid cgroup leaf name '" + std::string(name) + "'");
  return okStatus();
}

// Enables `controller` (pids, memory, cpu) for the managed directory's
// children; the error text if not.
std::optional<std::string> enableController(const fs::path& root, const fs::path& dir, const std::string& controller) {
  auto dir_controllers = readCgroupFile(dir / "cgroup.controllers");
  if (!dir_controllers) return dir_controllers.error().message;
  if (!hasWord(*dir_controllers, controller)) {
    auto root_controllers = readCgroupFile(root / "cgroup.controllers");
    if (!root_controllers) return root_controllers.error().message;
    if (!hasWord(*root_controllers, controller)) return controller + " controller not available in " + root.string();
    // Fails with EBUSY when the root holds processes (the agent) and is not
    // the hierarchy root: the no-internal-processes rule.
    if (auto enabled = writeCgroupFile(root / "cgroup.subtree_control", "+" + controller); !enabled) {
      return enabled.error().message;
    }
  }
  if (auto enabled = writeCgroupFile(dir / "cgroup.subtree_control", "+" + controller); !enabled) {
    return enabled.error().message;
  }
  return std::nullopt;
}

Status collectPids(const fs::path& dir, std::vector<pid_t>& pids, bool top) {
  auto own = readCgroupProcs(dir);
  // A sub-cgroup may be removed by the work between listing and reading.
  if (!own) return !top && own.error().kind == ErrorKind::kNotFound ? okStatus() : Status(own.error());
  pids.insert(pids.end(), own->begin(), own->end());
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::error_code type_ec;
    if (!entry.is_directory(type_ec)) continue;
    if (auto sub = collectPids(entry.path(), pids, false); !sub) return sub;
  }
  return okStatus();
}

// Post-order rmdir: sub-cgroups the work created go first. The first
// populated cgroup stops it with EBUSY.
Status removeEmptyTree(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::error_code type_ec;
    if (!entry.is_directory(type_ec)) continue;
    if (auto removed = removeEmptyTree(entry.path()); !removed) return removed;
  }
  if (::rmdir(dir.c_str()) != 0) return os::sysError("rmdir " + dir.string(), errno);
  return okStatus();
}

// One poll() for readability, bounded; EINTR just ends the wait early, the
// caller re-checks state anyway.
void waitReadable(int fd, std::chrono::milliseconds timeout) {
  pollfd pfd{fd, POLLIN, 0};
  ::poll(&pfd, 1, static_cast<int>(timeout.count()));
}

// SIGKILLs every process listed in the leaf, through pidfds (docs/design.md). Only
// pids still listed after their pidfds were opened are signalled: a pid reused
// between the first read and pidfd_open names a process outside the leaf,
// which is not listed again (and while frozen nothing can exit anyway).
// Kernels without pidfd_open (< 5.3) get kill(2) on the second listing.
void killEachPid(const fs::path& leaf) {
  auto listed = cgroupPids(leaf);
  if (!listed) return;
  std::vector<std::pair<pid_t, Result<int>>> pinned;
  for (const pid_t pid : *listed) pinned.emplace_back(pid, openPidfd(pid));
  auto still = cgroupPids(leaf);
  for (const auto& [pid, pidfd] : pinned) {
    if (still && std::find(still->begin(), still->end(), pid) != still->end()) {
      if (pidfd) {
        (void)signalPidfd(*pidfd, SIGKILL);
      } else if (pidfd.error().kind != ErrorKind::kNotFound) {
        ::kill(pid, SIGKILL);
      }
    }
    if (pidfd) ::close(*pidfd);
  }
}

}  // namespace

std::string unescapeMountField(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      const auto [end, ec] = std::from_chars(field.data() + i + 1, field.data() + i + 4, value, 8);
      if (ec == std::errc{} && end == field.data() + i + 4) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

Result<std::string> readCgroupFile(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return os::sysError("open " + path.string(), errno);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  }
  const int err = errno;
  ::close(fd);
  if (n < 0) return os::sysError("read " + path.string(), err);
  return text;
}

Status writeCgroupFile(const fs::path& path, std::string_view data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return os::sysError("open " + path.string(), errno);
  const ssize_t n = ::write(fd, data.data(), data.size());
  const int err = n < 0 ? errno : EIO;
  ::close(fd);
  if (n != static_cast<ssize_t>(data.size()))
    return os::sysError("write '" + std::string(data) + "' to " + path.string(), err);
  return okStatus();
}

Result<fs::path> detectCgroupRoot(const std::string& configured) {
  auto dir = configured.empty() ? ownCgroupDir() : Result<fs::path>(fs::path(configured).lexically_normal());
  if (!dir) return dir.error();
  if (auto cgroup2 = checkCgroup2Dir(*dir); !cgroup2) return cgroup2.error();
  if (auto writable = probeWritable(*dir); !writable) return writable.error();
  if (auto movable = probeCanStartIn(*dir); !movable) return movable.error();
  return dir;
}

Result<CgroupTree> CgroupTree::open(const fs::path& root) {
  if (auto cgroup2 = checkCgroup2Dir(root); !cgroup2) return cgroup2.error();
  auto dir = root / kManagedDirName;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return os::sysError("mkdir " + dir.string(), errno);
  std::optional<std::string> pids_error;
  std::set<std::string> leaf_controllers;
  for (const std::string controller : {"pids", "memory", "cpu"}) {
    auto error = enableController(root, dir, controller);
    if (!error) leaf_controllers.insert(controller);
    if (controller == "pids") pids_error = std::move(error);
  }
  return CgroupTree(std::move(dir), std::move(pids_error), std::move(leaf_controllers));
}

Result<fs::path> CgroupTree::createLeaf(std::string_view name) {
  if (auto valid = validateLeafName(name); !valid) return valid.error();
  auto leaf = dir_ / name;
  if (::mkdir(leaf.c_str(), 0755) != 0) return os::sysError("mkdir " + leaf.string(), errno);
  return leaf;
}

Status CgroupTree::removeLeaf(const fs::path& leaf) {
  // Only our own leaves: a bad path must never rmdir some other cgroup.
  if (leaf.parent_path() != dir_ || !validateLeafName(leaf.filename().string())) {
    return makeError(ErrorKind::kInvalid, leaf.string() + " is not a leaf of " + dir_.string());
  }
  return removeEmptyTree(leaf);
}

std::vector<fs::path> CgroupTree::leaves() const {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    std::error_code type_ec;
    if (entry.is_directory(type_ec)) found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

Result<CgroupEvents> readCgroupEvents(const fs::path& cgroup) {
  const auto path = cgroup / "cgroup.events";
  auto text = readCgroupFile(path);
  if (!text) return text.error();
  CgroupEvents events;
  bool saw_populated = false;
  std::istringstream in(*text);
  std::string key;
  int value = 0;
  while (in >> key >> value) {
    if (key == "populated") {
      events.populated = value != 0;
      saw_populated = true;
    } else if (key == "frozen") {
      events.frozen = value != 0;
    }
  }
  if (!saw_populated) return makeError(ErrorKind::kInternal, "no 'populated' line in " + path.string());
  return events;
}

Result<std::vector<pid_t>> readCgroupProcs(const fs::path& cgroup) {
  auto text = readCgroupFile(cgroup / "cgroup.procs");
  if (!text) return text.error();
  std::vector<pid_t> pids;
  std::istringstream in(*text);
  for (pid_t pid = 0; in >> pid;) pids.push_back(pid);
  return pids;
}

Result<bool> isPopulated(const fs::path& leaf) {
  auto events = readCgroupEvents(leaf);
  if (!events) return events.error();
  return events->populated;
}

Result<std::vector<pid_t>> cgroupPids(const fs::path& leaf) {
  std::vector<pid_t> pids;
  if (auto collected = collectPids(leaf, pids, true); !collected) return collected.error();
  return pids;
}

Status killCgroup(const fs::path& leaf, const CgroupKillOptions& options) {
  const auto kill_file = leaf / "cgroup.kill";
  if (::access(kill_file.c_str(), F_OK) != 0) {
    if (errno != ENOENT) return os::sysError("access " + kill_file.string(), errno);
    if (::access(leaf.c_str(), F_OK) != 0) return os::sysError("kill cgroup " + leaf.string(), errno);
    return killCgroupByFreezing(leaf, options);  // kernel < 5.14
  }
  auto watch = CgroupEventsWatch::open(leaf);
  if (!watch) return watch.error();
  const int rounds = std::max(1, options.max_rounds);
  for (int round = 0; round < rounds; ++round) {
    // Writing again is harmless: it SIGKILLs whatever is (still) there,
    // including a child whose fork raced the previous write.
    if (auto written = writeCgroupFile(kill_file, "1"); !written) return written;
    auto populated = watch->drainAndCheckPopulated();
    if (!populated) return populated.error();
    if (!*populated) break;
    if (round + 1 < rounds) waitReadable(watch->fd(), options.round_wait);
  }
  return okStatus();
}

Status killCgroupByFreezing(const fs::path& leaf, const CgroupKillOptions& options) {
  auto watch = CgroupEventsWatch::open(leaf);
  if (!watch) return watch.error();
  const auto freeze_file = leaf / "cgroup.freeze";
  // cgroup.freeze needs kernel 5.2; before it this is a plain sweep, and
  // the rounds are what catches forks that race it.
  const bool can_freeze = ::access(freeze_file.c_str(), F_OK) == 0;
  const int rounds = std::max(1, options.max_rounds);
  for (int round = 0; round < rounds; ++round) {
    if (can_freeze) {
      if (auto frozen = writeCgroupFile(freeze_file, "1"); !frozen) return frozen;
      // A task in uninterruptible sleep delays `frozen 1`: wait boundedly,
      // then kill anyway (SIGKILL does not depend on the freeze).
      for (int wait = 0; wait < rounds; ++wait) {
        (void)watch->drainAndCheckPopulated();
        auto events = readCgroupEvents(leaf);
        if (!events || events->frozen.value_or(false) || !events->populated) break;
        waitReadable(watch->fd(), options.round_wait);
      }
    }
    killEachPid(leaf);
    // Thaw even though the kills are out: a task that escaped this round must
    // not stay frozen, and the next round freezes again anyway.
    if (can_freeze) {
      if (auto thawed = writeCgroupFile(freeze_file, "0"); !thawed) return thawed;
    }
    auto populated = watch->drainAndCheckPopulated();
    if (!populated) return populated.error();
    if (!*populated) break;
    if (round + 1 < rounds) waitReadable(watch->fd(), options.round_wait);
  }
  return okStatus();
}

Result<CgroupEventsWatch> CgroupEventsWatch::open(const fs::path& leaf) {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return os::sysError("inotify_init1", errno);
  const auto events = leaf / "cgroup.events";
  if (::inotify_add_watch(fd, events.c_str(), IN_MODIFY) < 0) {
    const int err = errno;
    ::close(fd);
    return os::sysError("inotify_add_watch " + events.string(), err);
  }
  return CgroupEventsWatch(fd, leaf);
}

CgroupEventsWatch::CgroupEventsWatch(CgroupEventsWatch&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), leaf_(std::move(other.leaf_)) {}

// Swapping hands our old fd to `other`, whose destructor closes it.
CgroupEventsWatch& CgroupEventsWatch::operator=(CgroupEventsWatch&& other) noexcept {
  std::swap(fd_, other.fd_);
  std::swap(leaf_, other.leaf_);
  return *this;
}

CgroupEventsWatch::~CgroupEventsWatch() {
  if (fd_ >= 0) ::close(fd_);
}

Result<bool> CgroupEventsWatch::drainAndCheckPopulated() {
  alignas(inotify_event) char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return os::sysError("read inotify for " + leaf_.string(), errno);
    break;
  }
  return isPopulated(leaf_);
}

}  // namespace phonefarm::exec
