// The job units' containment; see the header.
#include "agent/exec/systemd_containment.hpp"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <functional>
#include <set>
#include <sstream>

#include "agent/exec/cgroup_tree.hpp"
#include "agent/exec/job_unit_limits.hpp"
#include "agent/exec/job_unit_shim.hpp"
#include "common/os/file_descriptor.hpp"

namespace phonefarm::exec {
namespace {

// How long a start job may take: the shim's exec (Type=exec), after polkit
// has answered. The event loop waits for it, as for a fork in `direct`.
constexpr std::chrono::milliseconds kStartTimeout{10'000};

bool pidfdExited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

class JobUnitContainer final : public Container {
 public:
  JobUnitContainer(ContainerInfo info, std::string unit, std::optional<CgroupEventsWatch> watch,
                   os::FileDescriptor leader, std::shared_ptr<JobUnits> units, WorkLimits limits)
      : info_(std::move(info)),
        unit_(std::move(unit)),
        watch_(std::move(watch)),
        leader_(std::move(leader)),
        units_(std::move(units)),
        limits_(limits) {}

  const ContainerInfo& info() const override { return info_; }

  std::vector<int> watchFds() const override {
    if (!watch_) return {};
    return {watch_->fd()};
  }

  Result<bool> poll() override {
    if (!watch_) return true;  // the unit was gone before it could be watched
    auto populated = watch_->drainAndCheckPopulated();
    if (!populated) {
      // systemd removed the unit's cgroup: nothing can be left in it.
      if (populated.error().kind == ErrorKind::kNotFound) return true;
      return populated.error();
    }
    return !*populated;
  }

  Status signalLeader(int sig) override {
    if (leader_.get() < 0 || pidfdExited(leader_.get())) {
      return makeError(ErrorKind::kNotFound, "the execution's leader has exited");
    }
    return signalPidfd(leader_.get(), sig);
  }

  Status kill() override {
    if (!watch_) return okStatus();
    const auto& unit_dir = watch_->leaf();
    // The whole unit at once where systemd delegated its cgroup.kill.
    if (killCgroup(unit_dir)) return okStatus();
    // Otherwise the two sub-cgroups the shim made (the agent user's), work
    // first; then KillUnit for whatever is still in the unit's own cgroup.
    Status result = okStatus();
    for (const auto& dir :
         {unit_dir / std::string(CgroupTree::kManagedDirName) / info_.id, unit_dir / std::string(kShimCgroupName)}) {
      std::error_code ec;
      if (!std::filesystem::exists(dir, ec)) continue;
      if (auto killed = killCgroup(dir); !killed) result = killed;
    }
    auto populated = isPopulated(unit_dir);
    if (populated && *populated) {
      if (auto killed = units_->kill(unit_, SIGKILL); !killed) return killed;
      return okStatus();
    }
    return result;
  }

  std::vector<pid_t> pids() override {
    if (!watch_) return {};
    auto p = cgroupPids(watch_->leaf());
    return p ? *p : std::vector<pid_t>{};
  }

  // systemd removes the unit's cgroup, sub-cgroups included, once the unit
  // is inactive (CollectMode=inactive-or-failed unloads it).
  Status remove() override { return okStatus(); }

  // The shim read the unit's counters when the command ended (the unit's
  // cgroups, v1 ones included, go with the unit). Without its report (a
  // shim from before it, or killed before it wrote), the work's v2 leaf, if
  // it is still there.
  std::optional<std::string> limitNote(const std::optional<LimitHits>& reported) override {
    if (reported) return phonefarm::exec::limitNote(*reported, limits_);
    if (!watch_) return std::nullopt;
    const auto leaf = watch_->leaf() / std::string(CgroupTree::kManagedDirName) / info_.id;
    return phonefarm::exec::limitNote(v2CgroupHits(leaf), limits_);
  }

 private:
  ContainerInfo info_;
  std::string unit_;
  std::optional<CgroupEventsWatch> watch_;
  os::FileDescriptor leader_;
  std::shared_ptr<JobUnits> units_;
  WorkLimits limits_;
};

class SystemdContainment final : public Containment {
 public:
  SystemdContainment(std::shared_ptr<JobUnits> units, const WorkLimits& limits, std::set<std::string> leaf_controllers,
                     DirectContainmentFactory direct, std::filesystem::path dropin)
      : units_(std::move(units)),
        limits_(limits),
        leaf_controllers_(std::move(leaf_controllers)),
        make_direct_(std::move(direct)),
        dropin_(std::move(dropin)) {}

  std::string_view runtime() const override { return kRuntimeSystemdUnit; }

  boost::json::object describe() const override {
    boost::json::object limits = describeJobUnitLimits(dropin_, limits_, leaf_controllers_);
    const auto* state = limits.if_contains("unit_dropin");
    const bool current = state == nullptr || !state->is_string() || state->get_string() == "current";
    // Once per mismatch (the daemon's start-up line is the first describe()).
    if (current) {
      dropin_warned_ = false;
    } else if (!dropin_warned_.exchange(true)) {
      spdlog::warn("exec.job_unit_limits_stale dropin={} state=\"{}\" job units run with other limits than [work]",
                   dropin_.string(), std::string_view(state->get_string()));
    }
    return {{"runtime", kRuntimeSystemdUnit},
            {"launcher", "systemd"},
            {"unit", "phonefarm-job@.service"},
            {"cgroup", nullptr},
            {"limits", std::move(limits)}};
  }

  std::optional<std::string> plannedCgroup(const std::string& execution_id) const override {
    auto unit = jobUnitName(execution_id);
    if (!unit) return std::nullopt;
    auto dir = cgroup2Dir(jobUnitCgroup(*unit));
    if (!dir) return std::nullopt;
    return dir->string();
  }

  Result<std::unique_ptr<Container>> launch(const LaunchRequest& request) override {
    auto unit = jobUnitName(request.execution_id);
    if (!unit) return unit.error();
    if (auto written = writeShimArgvFile(request.control_dir, request.command); !written) return written.error();
    auto started = units_->start(*unit, kStartTimeout);
    if (!started) return started.error();
    return container(request.execution_id, *unit, started->control_group, started->main_pid, std::nullopt);
  }

  Result<std::unique_ptr<Container>> adopt(const ContainerInfo& info, const std::string& marker) override {
    if (info.runtime != kRuntimeSystemdUnit) return direct().adopt(info, marker);
    auto unit = jobUnitName(info.id);
    if (!unit) return unit.error();
    if (!info.cgroup) return makeError(ErrorKind::kNotFound, "no cgroup recorded");
    std::error_code ec;
    if (!std::filesystem::exists(*info.cgroup, ec)) return makeError(ErrorKind::kNotFound, "the unit's cgroup is gone");
    return container(info.id, *unit, "", info.leader_pid, info.leader_start_time, *info.cgroup);
  }

  // The unit's cgroup, and the counters in it, went with the unit: only
  // what its shim reported is left.
  std::optional<std::string> releaseLimits(const std::string& /*execution_id*/,
                                           const std::optional<LimitHits>& reported) override {
    if (!reported) return std::nullopt;
    return limitNote(*reported, limits_);
  }

 private:
  Containment& direct() {
    if (!direct_) direct_ = make_direct_();
    return *direct_;
  }

  Result<std::unique_ptr<Container>> container(const std::string& id, const std::string& unit,
                                               const std::string& control_group, pid_t leader_pid,
                                               std::optional<long long> start_time,
                                               std::optional<std::string> cgroup_dir = std::nullopt) {
    if (!cgroup_dir) {
      auto dir = cgroup2Dir(control_group.empty() ? jobUnitCgroup(unit) : control_group);
      if (dir) cgroup_dir = dir->string();
    }
    std::optional<CgroupEventsWatch> watch;
    if (cgroup_dir) {
      auto opened = CgroupEventsWatch::open(*cgroup_dir);
      if (opened) watch.emplace(std::move(*opened));
    }
    // The leader: the shim, the unit's MainPID; verified by its start time
    // when adopted, taken as reported right after the start.
    os::FileDescriptor leader;
    if (leader_pid > 0) {
      if (start_time) {
        if (auto fd = openVerifiedPidfd(leader_pid, *start_time)) leader.reset(*fd);
      } else if (auto fd = openPidfd(leader_pid)) {
        leader.reset(*fd);
        start_time = processStartTime(leader_pid);
      }
    }
    ContainerInfo info{id, std::string(kRuntimeSystemdUnit), cgroup_dir, leader.get() >= 0 ? leader_pid : 0,
                       start_time};
    return std::unique_ptr<Container>(std::make_unique<JobUnitContainer>(std::move(info), unit, std::move(watch),
                                                                         std::move(leader), units_, limits_));
  }

  std::shared_ptr<JobUnits> units_;
  WorkLimits limits_;
  // The controllers system.slice has in cgroup v2: those the job shim can
  // write into the work's leaf.
  std::set<std::string> leaf_controllers_;
  DirectContainmentFactory make_direct_;
  std::unique_ptr<Containment> direct_;
  // The generated limits drop-in, read at each describe(); a mismatch is
  // logged once (exec.job_unit_limits_stale).
  std::filesystem::path dropin_;
  mutable std::atomic<bool> dropin_warned_{false};
};

}  // namespace

std::unique_ptr<Containment> makeSystemdContainment(std::shared_ptr<JobUnits> units, const WorkLimits& limits,
                                                    DirectContainmentFactory direct,
                                                    const std::filesystem::path& limits_dropin) {
  // The shim writes the limits into the work's leaf below the unit's
  // delegated cgroup v2, where Delegate=yes makes available what
  // system.slice has; systemd enforces the drop-in's copy on the unit in any
  // case, on a hybrid host through cgroup v1 (where v2 lacks pids and memory).
  std::set<std::string> controllers;
  if (auto slice = cgroup2Dir("/system.slice")) {
    if (auto text = readCgroupFile(*slice / "cgroup.controllers")) {
      std::istringstream words(*text);
      for (std::string word; words >> word;) controllers.insert(word);
    }
  }
  // Said once, here: a limit neither the units nor the leaf carry.
  const auto described = describeJobUnitLimits(limits_dropin, limits, controllers);
  for (const auto& kv : described) {
    const auto* entry = kv.value().if_object();
    const auto* why = entry == nullptr ? nullptr : entry->if_contains("unavailable");
    if (why != nullptr && why->is_string()) {
      spdlog::warn("exec.limit_unavailable limit={} reason=\"{}\" work runs without it", std::string_view(kv.key()),
                   std::string_view(why->get_string()));
    }
  }
  return std::make_unique<SystemdContainment>(std::move(units), limits, std::move(controllers), std::move(direct),
                                              limits_dropin);
}

}  // namespace phonefarm::exec
