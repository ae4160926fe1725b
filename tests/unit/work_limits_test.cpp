// Unit tests for the pure parts of the work limits: the counters read from
// cgroup files, the item's note, locating our v1 cgroup from
// /proc/self/{cgroup,mountinfo}, what a job unit's own cgroups say the
// limits did (against a fake cgroup root in a temp dir), and CPUWeight ->
// cpu.shares.
#include "agent/exec/work_limits.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

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

// A fake cgroup root: the job unit's v2 cgroup, and its cgroups in the v1
// pids and memory hierarchies, as /proc/self/cgroup and mountinfo name them
// on a hybrid host (the shim reads them there when the command has ended).
class UnitCgroupHits : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/phonefarm-unit-hits-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
    for (const auto* dir : {"unified", "pids", "memory"}) std::filesystem::create_directories(root_ / dir / kUnit);
    proc_cgroup_ = std::string("8:pids:/") + kUnit + "\n4:memory:/" + kUnit + "\n0::/" + kUnit + "/phonefarm-shim\n";
    mountinfo_ = "39 31 0:36 / " + (root_ / "pids").string() + " rw,relatime - cgroup cgroup rw,pids\n" +
                 "35 31 0:32 / " + (root_ / "memory").string() + " rw,relatime - cgroup cgroup rw,memory\n" +
                 "41 31 0:38 / " + (root_ / "unified").string() + " rw,relatime - cgroup2 cgroup2 rw\n";
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  void write(const std::string& hierarchy, const std::string& file, const std::string& text) const {
    std::ofstream(root_ / hierarchy / kUnit / file) << text;
  }
  std::filesystem::path unitV2() const { return root_ / "unified" / kUnit; }

  static constexpr const char* kUnit = "system.slice/system-phonefarm\\x2djob.slice/phonefarm-job@abc.service";
  // The limits whose counters are read (the values do not matter here).
  static inline const WorkLimits kBoth{64, 1ULL << 30, std::nullopt};
  static inline const WorkLimits kPidsOnly{64, std::nullopt, std::nullopt};
  static inline const WorkLimits kMemoryOnly{std::nullopt, 1ULL << 30, std::nullopt};
  std::filesystem::path root_;
  std::string proc_cgroup_;
  std::string mountinfo_;
};

TEST_F(UnitCgroupHits, HybridHostReadsTheUnitsV1Counters) {
  write("pids", "pids.events", "max 17\n");
  write("memory", "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  write("memory", "memory.failcnt", "90\n");  // reclaims, not kills: not read
  const LimitHits hits = unitCgroupHits(kBoth, unitV2(), proc_cgroup_, mountinfo_);
  EXPECT_EQ(hits, (LimitHits{2, 17}));
  // Only the limits asked for (those the shim could not place itself).
  EXPECT_EQ(unitCgroupHits(kMemoryOnly, unitV2(), proc_cgroup_, mountinfo_), (LimitHits{2, 0}));
  EXPECT_EQ(unitCgroupHits(WorkLimits{}, unitV2(), proc_cgroup_, mountinfo_), LimitHits{});
  // A limit nobody hit: nothing to note.
  write("pids", "pids.events", "max 0\n");
  EXPECT_EQ(unitCgroupHits(kPidsOnly, unitV2(), proc_cgroup_, mountinfo_), LimitHits{});
}

TEST_F(UnitCgroupHits, TheUnitsV2CgroupWinsWhereItHasTheController) {
  write("pids", "pids.events", "max 17\n");
  write("unified", "pids.events", "max 4\n");
  write("unified", "memory.events", "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n");
  EXPECT_EQ(unitCgroupHits(kBoth, unitV2(), proc_cgroup_, mountinfo_), (LimitHits{1, 4}));
}

TEST_F(UnitCgroupHits, NoControllerAnywhereIsNoHit) {
  EXPECT_EQ(unitCgroupHits(kBoth, unitV2(), proc_cgroup_, mountinfo_), LimitHits{});
  EXPECT_EQ(unitCgroupHits(kPidsOnly, unitV2(), "0::/x\n", ""), LimitHits{});
}

TEST(WorkLimitsTest, V2CgroupHitsReadsTheLeafsEvents) {
  char pattern[] = "/tmp/phonefarm-v2-hits-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::filesystem::path leaf = pattern;
  EXPECT_EQ(v2CgroupHits(leaf), LimitHits{});
  std::ofstream(leaf / "pids.events") << "max 3\n";
  std::ofstream(leaf / "memory.events") << "oom 2\noom_kill 2\n";
  EXPECT_EQ(v2CgroupHits(leaf), (LimitHits{2, 3}));
  std::filesystem::remove_all(leaf);
}

TEST(WorkLimitsTest, CpuWeightMapsToSharesAsSystemdDoes) {
  EXPECT_EQ(cpuSharesForWeight(100), 1024u);
  EXPECT_EQ(cpuSharesForWeight(10000), 102400u);
  EXPECT_EQ(cpuSharesForWeight(1), 10u);
}

}  // namespace
}  // namespace phonefarm::exec
