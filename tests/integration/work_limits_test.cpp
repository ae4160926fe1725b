// [work] pids_max and memory_max against the real agent and real cgroups: a
// bounded fork bomb stops at pids_max while another phone's work still runs,
// a job that allocates past memory_max is OOM-killed, and both items say so in
// their note. On hybrid hosts (pids and memory on cgroup v1, as on CI) this
// goes through the v1 hierarchies; where cgroup v2 has the controllers,
// through the leaf.
#include <poll.h>

#include <fstream>
#include <sstream>

#include "tests/integration/work_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;

class WorkLimits : public WorkFixture {
 protected:
  std::string workConfig() const override {
    std::string config = WorkFixture::workConfig();
    config.insert(std::string("[work]\n").size(), "pids_max = 64\nmemory_max = \"64M\"\ncpu_weight = 50\n");
    return config;
  }

  std::string out(const std::string& name) const { return (outDir() / name).string(); }

  // A fork bomb with bounds of its own, so that a missing limit cannot take
  // the machine down: at most 2000 sleepers of 3 s each. With the limit the
  // shell's fork fails and it gives up long before.
  std::string forkBombJob() const {
    return writeJob("bomb.sh",
                    "#!/bin/sh\n"
                    "cat /proc/self/cgroup > \"$1.cgroup\"\n"
                    "echo started > \"$1.started\"\n"
                    "n=0\n"
                    "while [ $n -lt 2000 ]; do sleep 3 & n=$((n+1)); done\n"
                    "echo $n > \"$1.forked\"\n"
                    "wait\n");
  }

  // Waits (up to an hour) for $1.go, then keeps 200 MB in one process (tail
  // holds a line it has not seen the end of).
  std::string hogJob() const {
    return writeJob("hog.sh",
                    "#!/bin/sh\n"
                    "cat /proc/self/cgroup > \"$1.cgroup\"\n"
                    "while [ ! -e \"$1.go\" ]; do sleep 0.05; done\n"
                    "head -c 200M /dev/zero | tail > /dev/null\n");
  }

  // The cgroups other than the v2 one ("N:controllers:/path") a job recorded.
  std::vector<std::filesystem::path> v1Cgroups(const std::string& recorded, const std::string& controller) {
    std::vector<std::filesystem::path> dirs;
    std::istringstream in(recorded);
    for (std::string line; std::getline(in, line);) {
      const auto first = line.find(':');
      const auto second = line.find(':', first + 1);
      const std::string controllers = line.substr(first + 1, second - first - 1);
      if (("," + controllers + ",").find("," + controller + ",") == std::string::npos) continue;
      dirs.push_back(std::filesystem::path("/sys/fs/cgroup") / controller / line.substr(second + 2));
    }
    return dirs;
  }
};

TEST_F(WorkLimits, ForkBombStopsAtPidsMaxWhileAnotherPhoneStillStartsAndItsNoteNamesThePidsLimit) {
  const std::string bomb = forkBombJob();
  const std::string record = writeJob("ok.sh", "#!/bin/sh\necho done > \"$1\"\n");
  submitWork("bomb", {{bomb, out("bomb")}}, "phone_01");
  waitForLine(outDir() / "bomb.started");

  // The bomb's sleepers live 3 s: the other phone starts and ends meanwhile.
  submitWork("other", {{record, out("other.done")}}, "phone_02");
  waitForStatus("other", "succeeded");
  EXPECT_EQ(waitForLine(outDir() / "other.done"), "done\n");
  EXPECT_EQ(getProcess("bomb").at("status"), "running") << "the bomb ended before the other phone's work";

  auto p = waitForProcess("bomb", [](const json::object& process) { return process.at("status") != "running"; });
  const auto& item = p.at("queue_items").at(0).as_object();
  ASSERT_TRUE(item.at("note").is_string()) << json::serialize(p);
  EXPECT_NE(std::string(item.at("note").as_string()).find("pids limit: pids_max 64"), std::string::npos)
      << json::serialize(p);
  // The shell never got to its 2000th fork.
  EXPECT_FALSE(std::filesystem::exists(outDir() / "bomb.forked")) << waitForFile(outDir() / "bomb.forked");

  // Where pids is a v1 controller, the execution had a v1 cgroup of its own,
  // removed with the execution.
  for (const auto& dir : v1Cgroups(waitForLine(outDir() / "bomb.cgroup"), "pids")) {
    if (dir.parent_path().filename() == "phonefarm-work") {
      EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
    }
  }
}

TEST_F(WorkLimits, MemoryMaxBreachIsAnOomKillInTheNoteEvenAfterARestart) {
  const std::string hog = hogJob();
  submitWork("hog", {{hog, out("hog")}});
  const std::string cgroups = waitForLine(outDir() / "hog.cgroup");

  const auto readyz = call("GET", "/readyz", "", kReadToken).json();
  const auto& limits = readyz.at("work").at("limits").as_object();
  EXPECT_EQ(limits.at("pids_max").at("value"), 64) << json::serialize(limits);
  EXPECT_EQ(limits.at("memory_max").at("value"), 64 << 20) << json::serialize(limits);
  EXPECT_TRUE(limits.at("memory_max").as_object().contains("cgroup")) << json::serialize(limits);
  // cpu_weight 50: v2 cpu.weight, or v1 cpu.shares 512 (systemd's mapping),
  // in force while the job runs.
  if (limits.at("cpu_weight").at("cgroup") == "v1") {
    const auto dirs = v1Cgroups(cgroups, "cpu");
    ASSERT_EQ(dirs.size(), 1u) << cgroups;
    EXPECT_EQ(waitForLine(dirs[0] / "cpu.shares"), "512\n");
  } else {
    EXPECT_EQ(limits.at("cpu_weight").at("cgroup"), "v2") << json::serialize(limits);
  }

  // The agent restarts while the job runs: the re-adopted execution still
  // gets its note and its cgroups removed.
  restartAgent(SIGTERM);
  std::ofstream(outDir() / "hog.go") << "go\n";

  auto p = waitForProcess("hog", [](const json::object& process) { return process.at("status") != "running"; });
  const auto& item = p.at("queue_items").at(0).as_object();
  EXPECT_EQ(item.at("status"), "failed") << json::serialize(p);
  ASSERT_TRUE(item.at("note").is_string()) << json::serialize(p);
  EXPECT_NE(std::string(item.at("note").as_string()).find("memory limit: OOM kill"), std::string::npos)
      << json::serialize(p);
  for (const auto& dir : v1Cgroups(cgroups, "memory")) {
    if (dir.parent_path().filename() == "phonefarm-work") {
      EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
    }
  }
}

// The agent is down while the job is OOM-killed and its tree ends, and the
// v2 leaf is gone by the time it comes back (as after a manual cleanup): the
// recovery finds no tree to adopt, yet still notes the OOM kill from the v1
// counters and removes the v1 cgroups.
TEST_F(WorkLimits, RecoveryOfAGoneTreeStillNotesTheOomKillAndRemovesItsV1Cgroups) {
  const std::string hog = hogJob();
  submitWork("gone", {{hog, out("gone")}});
  const std::string cgroups = waitForLine(outDir() / "gone.cgroup");
  const auto memory_dirs = v1Cgroups(cgroups, "memory");

  client_.reset();
  agent_->stop(SIGKILL, std::chrono::seconds(10));
  std::ofstream(outDir() / "gone.go") << "go\n";
  // The leaf of the execution: the last part of the job's "0::" line.
  const std::string v2 = cgroups.substr(cgroups.find("0::"));
  const auto leaf = cgroup_ / "phonefarm-work" / std::filesystem::path(v2.substr(3, v2.find('\n') - 3)).filename();
  auto watch = exec::CgroupEventsWatch::open(leaf);
  ASSERT_TRUE(watch.ok()) << leaf;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (auto populated = watch->drainAndCheckPopulated(); populated.ok() && *populated;
       populated = watch->drainAndCheckPopulated()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    ASSERT_GT(left.count(), 0) << "the job's tree did not end";
    pollfd pfd{watch->fd(), POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(left.count()));
  }
  ASSERT_EQ(::rmdir(leaf.c_str()), 0) << leaf;

  startAgent();
  auto p = waitForProcess("gone", [](const json::object& process) { return process.at("status") != "running"; });
  const auto& item = p.at("queue_items").at(0).as_object();
  ASSERT_TRUE(item.at("note").is_string()) << json::serialize(p);
  EXPECT_NE(std::string(item.at("note").as_string()).find("memory limit: OOM kill"), std::string::npos)
      << json::serialize(p);
  for (const auto& dir : memory_dirs) {
    if (dir.parent_path().filename() == "phonefarm-work") {
      EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
    }
  }
}

}  // namespace
}  // namespace phonefarm::testing
