// FakeContainment: an exec::Containment for unit tests. Nothing is spawned:
// launch() records the request and hands back a FakeContainer whose state
// (ContainerState) the test keeps, so it decides when a tree is gone and sees
// every signal, kill and removal. Watch descriptors are made-up numbers that
// only a FakeLoop sees.
#pragma once

#include <sys/types.h>

#include <boost/json/object.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/exec/containment.hpp"

namespace phonefarm::exec {

// What the test controls and observes of one container; shared so it outlives
// the Container the executor owns (and removes) at the end.
struct ContainerState {
  ContainerInfo info;
  int fd = -1;
  bool gone = false;
  std::vector<int> signals;  // signalLeader() calls, in order
  int kills = 0;
  bool removed = false;
  std::vector<pid_t> pids;
  // What limitNote() was given (status.json's limit_hits), once asked.
  std::optional<std::optional<LimitHits>> reported_hits;
};

class FakeContainer final : public Container {
 public:
  explicit FakeContainer(std::shared_ptr<ContainerState> s) : s_(std::move(s)) {}
  const ContainerInfo& info() const override { return s_->info; }
  std::vector<int> watchFds() const override { return {s_->fd}; }
  Result<bool> poll() override { return s_->gone; }
  Status signalLeader(int sig) override {
    s_->signals.push_back(sig);
    return okStatus();
  }
  Status kill() override {
    ++s_->kills;
    return okStatus();
  }
  std::vector<pid_t> pids() override { return s_->pids; }
  Status remove() override {
    s_->removed = true;
    return okStatus();
  }
  // As the job units' container: the note is the shim's report's.
  std::optional<std::string> limitNote(const std::optional<LimitHits>& reported) override {
    s_->reported_hits = reported;
    return reported ? exec::limitNote(*reported, WorkLimits{64, std::nullopt, std::nullopt}) : std::nullopt;
  }

 private:
  std::shared_ptr<ContainerState> s_;
};

class FakeContainment final : public Containment {
 public:
  struct Launched {
    LaunchRequest request;
    std::shared_ptr<ContainerState> state;
  };
  struct Adopted {
    ContainerInfo info;
    std::string marker;
  };

  std::string_view runtime() const override { return kRuntimeCgroup; }
  boost::json::object describe() const override { return {{"runtime", "cgroup"}}; }
  std::optional<std::string> plannedCgroup(const std::string& execution_id) const override {
    return "/sys/fs/cgroup/test/" + execution_id;
  }

  Result<std::unique_ptr<Container>> launch(const LaunchRequest& request) override {
    ++launch_attempts;
    if (fail_launches > 0) {
      --fail_launches;
      return makeError(ErrorKind::kInternal, "clone3: Resource temporarily unavailable");
    }
    auto s = std::make_shared<ContainerState>();
    s->info = ContainerInfo{request.execution_id, std::string(kRuntimeCgroup), plannedCgroup(request.execution_id),
                            static_cast<pid_t>(5000 + launched.size()), 777};
    s->fd = next_fd_++;
    launched.push_back({request, s});
    return std::unique_ptr<Container>(std::make_unique<FakeContainer>(s));
  }

  Result<std::unique_ptr<Container>> adopt(const ContainerInfo& info, const std::string& marker) override {
    adopted.push_back({info, marker});
    auto it = adoptable.find(info.id);
    if (it == adoptable.end()) return makeError(ErrorKind::kNotFound, "cgroup gone");
    it->second->info = info;
    it->second->fd = next_fd_++;
    return std::unique_ptr<Container>(std::make_unique<FakeContainer>(it->second));
  }

  std::vector<Launched> launched;
  std::vector<Adopted> adopted;
  std::map<std::string, std::shared_ptr<ContainerState>> adoptable;  // by execution id
  int fail_launches = 0;
  int launch_attempts = 0;

 private:
  int next_fd_ = 10'000;  // never a real descriptor: only the fake loop sees them
};

}  // namespace phonefarm::exec
