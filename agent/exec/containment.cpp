// The cgroup and process-group runtimes; see containment.hpp.
#include "agent/exec/containment.hpp"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <fstream>

#include "agent/exec/cgroup_tree.hpp"
#include "agent/exec/process_group_killer.hpp"
#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::exec {
namespace {

// Whether a pidfd reports its process as exited, without blocking.
bool pidfdExited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

// The leader: our child (reaped through its pidfd) or, after a restart, a
// process we only hold a pidfd to (or nothing, when it is gone).
struct Leader {
  os::FileDescriptor pidfd;
  bool is_child = false;
  bool exited = false;

  // Consumes the pidfd's readiness; reaps a child.
  void update(pid_t pid) {
    if (exited || pidfd.get() < 0) return;
    if (is_child) {
      auto r = reapIfExited(pidfd.get(), pid);
      if (!r || r->has_value()) exited = true;  // ECHILD: someone reaped it already
    } else if (pidfdExited(pidfd.get())) {
      exited = true;
    }
  }

  Status signal(int sig) {
    if (exited || pidfd.get() < 0) return makeError(ErrorKind::kNotFound, "the execution's leader has exited");
    return signalPidfd(pidfd.get(), sig);
  }
};

class CgroupContainer final : public Container {
 public:
  CgroupContainer(CgroupTree tree, ContainerInfo info, CgroupEventsWatch watch, Leader leader,
                  std::shared_ptr<const WorkLimiter> limiter)
      : tree_(std::move(tree)),
        info_(std::move(info)),
        watch_(std::move(watch)),
        leader_(std::move(leader)),
        limiter_(std::move(limiter)) {}

  const ContainerInfo& info() const override { return info_; }

  std::vector<int> watchFds() const override {
    std::vector<int> fds{watch_.fd()};
    if (leader_.is_child && !leader_.exited) fds.push_back(leader_.pidfd.get());
    return fds;
  }

  Result<bool> poll() override {
    leader_.update(info_.leader_pid);
    auto populated = watch_.drainAndCheckPopulated();
    if (!populated) {
      // The leaf was removed behind our back: nothing can be left in it.
      if (populated.error().kind == ErrorKind::kNotFound) return !leader_.is_child || leader_.exited;
      return populated.error();
    }
    // A child leader leaves the cgroup before it can be reaped: wait for both.
    return !*populated && (!leader_.is_child || leader_.exited);
  }

  Status signalLeader(int sig) override { return leader_.signal(sig); }
  Status kill() override { return killCgroup(watch_.leaf()); }

  std::vector<pid_t> pids() override {
    auto p = cgroupPids(watch_.leaf());
    return p ? *p : std::vector<pid_t>{};
  }

  Status remove() override {
    std::error_code ec;
    Status removed = std::filesystem::exists(watch_.leaf(), ec) ? tree_.removeLeaf(watch_.leaf()) : okStatus();
    Status released = limiter_->release(info_.id);
    return removed ? released : removed;
  }

  std::optional<std::string> limitNote(const std::optional<LimitHits>& /*reported*/) override {
    return phonefarm::exec::limitNote(limiter_->hits(info_.id, watch_.leaf()), limiter_->limits());
  }

 private:
  CgroupTree tree_;
  ContainerInfo info_;
  CgroupEventsWatch watch_;
  Leader leader_;
  std::shared_ptr<const WorkLimiter> limiter_;
};

class ProcessGroupContainer final : public Container {
 public:
  ProcessGroupContainer(ContainerInfo info, Leader leader, std::string marker,
                        std::shared_ptr<const WorkLimiter> limiter)
      : info_(std::move(info)), leader_(std::move(leader)), marker_(std::move(marker)), limiter_(std::move(limiter)) {}

  const ContainerInfo& info() const override { return info_; }
  std::vector<int> watchFds() const override {
    if (leader_.exited || leader_.pidfd.get() < 0) return {};
    return {leader_.pidfd.get()};
  }

  Result<bool> poll() override {
    if (!swept_ && (leader_.pidfd.get() < 0 || pidfdExited(leader_.pidfd.get()))) {
      // The leader has exited but is not reaped yet, so its pid (the group id)
      // cannot have been reused: sweep what it left behind, then reap.
      swept_ = true;
      // Only an unreaped child's group id is certainly still ours.
      if (::kill(-info_.leader_pid, 0) == 0 || !marker_.empty()) {
        (void)killProcessGroupTree(info_.leader_pid, marker_, leader_.is_child);
      }
    }
    leader_.update(info_.leader_pid);
    return leader_.exited || leader_.pidfd.get() < 0;
  }

  Status signalLeader(int sig) override { return leader_.signal(sig); }

  Status kill() override {
    // The group is signalled only while its leader is the very process we
    // started or verified (pid and start time) at adoption, and still there.
    const bool leader_verified =
        leader_.pidfd.get() >= 0 && !leader_.exited && (leader_.is_child || !pidfdExited(leader_.pidfd.get()));
    auto r = killProcessGroupTree(info_.leader_pid, marker_, leader_verified);
    if (!r) return r.error();
    return okStatus();
  }

  std::vector<pid_t> pids() override {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
      const auto name = entry.path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      const auto pid = static_cast<pid_t>(std::stol(name));
      if (::getpgid(pid) == info_.leader_pid) out.push_back(pid);
    }
    return out;
  }

  Status remove() override { return limiter_->release(info_.id); }

  std::optional<std::string> limitNote(const std::optional<LimitHits>& /*reported*/) override {
    return phonefarm::exec::limitNote(limiter_->hits(info_.id, std::nullopt), limiter_->limits());
  }

 private:
  ContainerInfo info_;
  Leader leader_;
  std::string marker_;
  std::shared_ptr<const WorkLimiter> limiter_;
  bool swept_ = false;
};

// What both runtimes share: the work limits.
class LimitedContainment : public Containment {
 public:
  explicit LimitedContainment(std::shared_ptr<const WorkLimiter> limiter) : limiter_(std::move(limiter)) {}

  std::optional<std::string> releaseLimits(const std::string& execution_id,
                                           const std::optional<LimitHits>& /*reported*/) override {
    auto note = limitNote(limiter_->hits(execution_id, std::nullopt), limiter_->limits());
    if (auto released = limiter_->release(execution_id); !released) {
      spdlog::warn("exec.cleanup_failed execution_id={} error=\"{}\"", execution_id, released.error().message);
    }
    return note;
  }

  Result<std::unique_ptr<Container>> adopt(const ContainerInfo& info, const std::string& marker) override;

 protected:
  std::shared_ptr<const WorkLimiter> limiter_;
};

class CgroupContainment final : public LimitedContainment {
 public:
  CgroupContainment(CgroupTree tree, std::shared_ptr<const WorkLimiter> limiter)
      : LimitedContainment(std::move(limiter)), tree_(std::move(tree)) {}
  std::string_view runtime() const override { return kRuntimeCgroup; }

  boost::json::object describe() const override {
    boost::json::object o{{"runtime", kRuntimeCgroup}, {"launcher", "direct"}, {"cgroup", tree_.dir().string()}};
    if (tree_.pidsControllerError()) o["pids_controller"] = *tree_.pidsControllerError();
    o["limits"] = limiter_->describe();
    return o;
  }

  std::optional<std::string> plannedCgroup(const std::string& execution_id) const override {
    return (tree_.dir() / execution_id).string();
  }

  Result<std::unique_ptr<Container>> launch(const LaunchRequest& request) override {
    auto leaf = tree_.createLeaf(request.execution_id);
    if (!leaf) return leaf.error();
    auto watch = CgroupEventsWatch::open(*leaf);
    if (!watch) {
      (void)tree_.removeLeaf(*leaf);
      return watch.error();
    }
    // The limits are in place before the leader exists.
    auto joins = limiter_->prepare(request.execution_id, *leaf);
    if (!joins) {
      (void)tree_.removeLeaf(*leaf);
      return joins.error();
    }
    SpawnRequest spawn;
    spawn.argv = request.argv;
    spawn.env = request.env;
    spawn.cgroup = *leaf;
    spawn.join_cgroups = std::move(*joins);
    spawn.new_session = true;
    spawn.blocked_signals = request.blocked_signals;
    auto spawned = spawnProcess(spawn);
    if (!spawned) {
      (void)tree_.removeLeaf(*leaf);
      (void)limiter_->release(request.execution_id);
      return spawned.error();
    }
    ContainerInfo info{request.execution_id, std::string(kRuntimeCgroup), leaf->string(), spawned->pid,
                       processStartTime(spawned->pid)};
    Leader leader{os::FileDescriptor(spawned->pidfd), true, false};
    return std::unique_ptr<Container>(
        std::make_unique<CgroupContainer>(tree_, std::move(info), std::move(*watch), std::move(leader), limiter_));
  }

 private:
  CgroupTree tree_;
};

// Whether `pid` lives in the cgroup `leaf` (its "0::" line names the leaf
// relative to the cgroup2 mount).
bool inCgroup(pid_t pid, const std::string& leaf) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    const std::string rel = line.substr(3);
    return rel.size() > 1 && leaf.size() >= rel.size() && leaf.compare(leaf.size() - rel.size(), rel.size(), rel) == 0;
  }
  return false;
}

// After a restart the leader is signalled only if it is still the process
// the store names: same pid and start time and, for the cgroup runtime, in
// the execution's leaf.
Leader adoptLeader(const ContainerInfo& info) {
  Leader leader;
  if (info.leader_pid > 0 && info.leader_start_time) {
    if (auto fd = openVerifiedPidfd(info.leader_pid, *info.leader_start_time)) {
      leader.pidfd = os::FileDescriptor(*fd);
      if (info.cgroup && !inCgroup(info.leader_pid, *info.cgroup)) leader.pidfd.reset();
    }
  }
  leader.exited = leader.pidfd.get() < 0;
  return leader;
}

// Either runtime adopts executions of both (the config may have changed
// across the restart).
Result<std::unique_ptr<Container>> LimitedContainment::adopt(const ContainerInfo& info, const std::string& marker) {
  if (info.runtime == kRuntimeCgroup) {
    if (!info.cgroup) return makeError(ErrorKind::kNotFound, "no cgroup recorded");
    const std::filesystem::path leaf(*info.cgroup);
    auto watch = CgroupEventsWatch::open(leaf);
    if (!watch) return watch.error();
    auto tree = CgroupTree::open(leaf.parent_path().parent_path());  // the leaf's own phonefarm-work
    if (!tree) return tree.error();
    return std::unique_ptr<Container>(
        std::make_unique<CgroupContainer>(std::move(*tree), info, std::move(*watch), adoptLeader(info), limiter_));
  }
  Leader leader = adoptLeader(info);
  if (leader.exited && (info.leader_pid <= 1 || ::kill(-info.leader_pid, 0) != 0)) {
    return makeError(ErrorKind::kNotFound, "the execution's process group is gone");
  }
  return std::unique_ptr<Container>(std::make_unique<ProcessGroupContainer>(info, std::move(leader), marker, limiter_));
}

class ProcessGroupContainment final : public LimitedContainment {
 public:
  ProcessGroupContainment(std::string why, std::shared_ptr<const WorkLimiter> limiter)
      : LimitedContainment(std::move(limiter)), why_(std::move(why)) {}
  std::string_view runtime() const override { return kRuntimeProcessGroup; }

  boost::json::object describe() const override {
    return {{"runtime", kRuntimeProcessGroup},
            {"launcher", "direct"},
            {"cgroup", nullptr},
            {"cgroup_unavailable", why_},
            {"limits", limiter_->describe()}};
  }

  std::optional<std::string> plannedCgroup(const std::string&) const override { return std::nullopt; }

  Result<std::unique_ptr<Container>> launch(const LaunchRequest& request) override {
    auto joins = limiter_->prepare(request.execution_id, std::nullopt);
    if (!joins) return joins.error();
    SpawnRequest spawn;
    spawn.argv = request.argv;
    spawn.env = request.env;
    spawn.join_cgroups = std::move(*joins);
    spawn.new_session = true;
    spawn.blocked_signals = request.blocked_signals;
    auto spawned = spawnProcess(spawn);
    if (!spawned) {
      (void)limiter_->release(request.execution_id);
      return spawned.error();
    }
    ContainerInfo info{request.execution_id, std::string(kRuntimeProcessGroup), std::nullopt, spawned->pid,
                       processStartTime(spawned->pid)};
    Leader leader{os::FileDescriptor(spawned->pidfd), true, false};
    return std::unique_ptr<Container>(
        std::make_unique<ProcessGroupContainer>(std::move(info), std::move(leader), request.marker, limiter_));
  }

 private:
  std::string why_;
};

}  // namespace

boost::json::object ContainerInfo::toJson() const {
  boost::json::object o{{"id", id}, {"runtime", runtime}};
  o["cgroup"] = cgroup ? boost::json::value(*cgroup) : boost::json::value(nullptr);
  o["leader_pid"] = leader_pid > 0 ? boost::json::value(leader_pid) : boost::json::value(nullptr);
  return o;
}

std::unique_ptr<Containment> makeContainment(const std::string& cgroup_root, const WorkLimits& limits) {
  auto makeLimiter = [&limits](const std::set<std::string>& v2_leaf_controllers) {
    auto limiter = std::make_shared<const WorkLimiter>(WorkLimiter::open(limits, v2_leaf_controllers));
    for (const auto& [limit, why] : limiter->unavailable()) {
      spdlog::warn("exec.limit_unavailable limit={} reason=\"{}\" work runs without it", limit, why);
    }
    return limiter;
  };
  auto root = detectCgroupRoot(cgroup_root);
  if (root) {
    auto tree = CgroupTree::open(*root);
    if (tree) {
      auto limiter = makeLimiter(tree->leafControllers());
      return std::make_unique<CgroupContainment>(std::move(*tree), std::move(limiter));
    }
    root = tree.error();
  }
  // Orphans of the fallback runtime must re-parent to the agent to be swept.
  (void)becomeChildSubreaper();
  return std::make_unique<ProcessGroupContainment>(root.error().message, makeLimiter({}));
}

Result<int> openVerifiedPidfd(pid_t pid, long long start_time) {
  auto fd = openPidfd(pid);
  if (!fd) return fd.error();
  if (processStartTime(pid) != start_time) {
    ::close(*fd);
    return makeError(ErrorKind::kNotFound, "pid " + std::to_string(pid) + " now names another process");
  }
  return *fd;
}

}  // namespace phonefarm::exec
