// Unit tests for the pure parts of the work limits: the counters read from
// cgroup files, the item's note, locating our v1 cgroup from
// /proc/self/{cgroup,mountinfo}, and CPUWeight -> cpu.shares.
#include "agent/exec/work_limits.hpp"

#include <gtest/gtest.h>

namespace phonefarm::exec {
namespace {

TEST(WorkLimitsTest, KeyedCounterReadsTheNamedLineOnly) {
  EXPECT_EQ(keyedCounter("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n", "oom_kill"), 2u);
  EXPECT_EQ(keyedCounter("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n", "max"), 12u);
  EXPECT_EQ(keyedCounter("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", "oom_kill"), 7u);
  EXPECT_EQ(keyedCounter("max 0\n", "max"), 0u);
  EXPECT_EQ(keyedCounter("", "max"), 0u);
  EXPECT_EQ(keyedCounter("max\nmax x\n", "max"), 0u);
}

TEST(WorkLimitsTest, NoteNamesWhichLimitStoppedTheItem) {
  const WorkLimits limits{64, 64ULL << 20, std::nullopt};
  EXPECT_EQ(limitNote({}, limits), std::nullopt);
  EXPECT_EQ(*limitNote({0, 5}, limits), "stopped by the pids limit: pids_max 64 reached (5 fork(s) refused)");
  EXPECT_EQ(*limitNote({1, 0}, limits),
            "stopped by the memory limit: OOM kill (1 process(es) killed at memory_max 67108864 bytes)");
  const auto both = *limitNote({2, 3}, limits);
  EXPECT_NE(both.find("OOM kill"), std::string::npos) << both;
  EXPECT_NE(both.find("pids limit"), std::string::npos) << both;
}

constexpr const char* kHybridCgroup =
    "9:name=systemd:/system.slice/phonefarm-agent.service\n"
    "8:pids:/system.slice/phonefarm-agent.service\n"
    "4:memory:/system.slice/phonefarm-agent.service\n"
    "2:cpu,cpuacct:/system.slice/phonefarm-agent.service\n"
    "0::/system.slice/phonefarm-agent.service\n";
constexpr const char* kHybridMounts =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

TEST(WorkLimitsTest, FindsOurCgroupInTheV1HierarchyOfAController) {
  EXPECT_EQ(v1CgroupDir(kHybridCgroup, kHybridMounts, "pids"),
            std::filesystem::path("/sys/fs/cgroup/pids/system.slice/phonefarm-agent.service"));
  EXPECT_EQ(v1CgroupDir(kHybridCgroup, kHybridMounts, "memory"),
            std::filesystem::path("/sys/fs/cgroup/memory/system.slice/phonefarm-agent.service"));
  EXPECT_EQ(v1CgroupDir(kHybridCgroup, kHybridMounts, "cpu"),
            std::filesystem::path("/sys/fs/cgroup/cpu,cpuacct/system.slice/phonefarm-agent.service"));
  // Not a v1 controller here (cpuacct's prefix, systemd's named hierarchy, v2).
  EXPECT_EQ(v1CgroupDir(kHybridCgroup, kHybridMounts, "cpuac"), std::nullopt);
  EXPECT_EQ(v1CgroupDir(kHybridCgroup, kHybridMounts, "hugetlb"), std::nullopt);
  EXPECT_EQ(v1CgroupDir("0::/x\n", "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "pids"), std::nullopt);
}

TEST(WorkLimitsTest, V1MountRootsInsideContainersAreStripped) {
  // A container sees its own cgroup as the mount's root ("/docker/abc").
  const std::string cgroup = "5:pids:/docker/abc/sub\n";
  const std::string mounts = "39 31 0:36 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
  EXPECT_EQ(v1CgroupDir(cgroup, mounts, "pids"), std::filesystem::path("/sys/fs/cgroup/pids/sub"));
  EXPECT_EQ(v1CgroupDir("5:pids:/elsewhere\n", mounts, "pids"), std::nullopt);
}

TEST(WorkLimitsTest, CpuWeightMapsToSharesAsSystemdDoes) {
  EXPECT_EQ(cpuSharesForWeight(100), 1024u);
  EXPECT_EQ(cpuSharesForWeight(10000), 102400u);
  EXPECT_EQ(cpuSharesForWeight(1), 10u);
}

}  // namespace
}  // namespace phonefarm::exec
