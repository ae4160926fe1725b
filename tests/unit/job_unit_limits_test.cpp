// The job units' limits drop-in (agent/exec/job_unit_limits.hpp): what the
// generator subcommand writes for set, unset and hostile configs (and that
// it never fails), and how the agent reads the generated file back for
// /readyz and GET /debug (current, stale, missing, not ours).
#include "agent/exec/job_unit_limits.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/json/serialize.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "agent/exec/systemd_containment.hpp"
#include "tests/support/temp_dir.hpp"

namespace phonefarm::exec {
namespace {

namespace fs = std::filesystem;
using phonefarm::testing::TempDir;
using phonefarm::testing::writeFile;

std::string readAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The directive lines of a drop-in (comments and the header left out).
std::vector<std::string> directives(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.front() != '#' && line != "[Service]") out.push_back(line);
  }
  return out;
}

class JobUnitLimitsTest : public ::testing::Test {
 protected:
  // Runs the subcommand on a config of `toml`; returns its stderr.
  std::string generate(const std::string& toml) {
    writeFile(dir_ / "agent.toml", toml, 0600);
    std::ostringstream err;
    EXPECT_EQ(runJobUnitLimits({"--config", (dir_ / "agent.toml").string(), "--out", out().string()}, err), 0);
    return err.str();
  }
  fs::path out() const { return dir_ / "normal"; }
  fs::path dropin() const { return out() / kJobUnitLimitsDropIn; }

  TempDir dir_;
};

TEST_F(JobUnitLimitsTest, WritesEveryConfiguredLimitAsItsDirective) {
  EXPECT_EQ(generate("[work]\npids_max = 64\nmemory_max = \"512M\"\ncpu_weight = 50\n"), "");
  EXPECT_EQ(directives(readAll(dropin())),
            (std::vector<std::string>{"TasksMax=64", "MemoryMax=536870912", "CPUWeight=50"}));
  const std::string text = readAll(dropin());
  EXPECT_NE(text.find("\n[Service]\n"), std::string::npos) << text;
  struct stat st {};
  ASSERT_EQ(::stat(dropin().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST_F(JobUnitLimitsTest, UnsetLimitsWriteNoDirectiveAndPidsMaxHasItsDefault) {
  EXPECT_EQ(generate(""), "");
  EXPECT_EQ(directives(readAll(dropin())), std::vector<std::string>{"TasksMax=4096"});
}

TEST_F(JobUnitLimitsTest, AsAGeneratorItWritesIntoTheNormalDir) {
  writeFile(dir_ / "agent.toml", "[work]\npids_max = 100\n", 0600);
  std::ostringstream err;
  const auto normal = dir_ / "n", early = dir_ / "e", late = dir_ / "l";
  EXPECT_EQ(runJobUnitLimits({"--config", (dir_ / "agent.toml").string(), normal, early, late}, err), 0);
  EXPECT_EQ(err.str(), "");
  EXPECT_EQ(directives(readAll(normal / kJobUnitLimitsDropIn)), std::vector<std::string>{"TasksMax=100"});
  EXPECT_FALSE(fs::exists(early / kJobUnitLimitsDropIn));
  EXPECT_FALSE(fs::exists(late / kJobUnitLimitsDropIn));
}

TEST_F(JobUnitLimitsTest, AHostileOrInvalidConfigWritesNothingSaysWhyOnceAndExitsZero) {
  const std::vector<std::string> hostile = {
      "[work]\npids_max = \"64\\nMemoryMax=1\"\n",
      "[work]\nmemory_max = \"1G\\n[Service]\\nExecStartPre=/bin/sh\"\n",
      "[work]\ncpu_weight = \"100\\nUser=root\"\n",
      "[work]\npids_max = -1\n",
      "[work]\ncpu_weight = 0\n",
      "[work]\nmemory_max = \"12 G\"\n",
      "[work\n",
  };
  for (const auto& toml : hostile) {
    const std::string err = generate(toml);
    EXPECT_FALSE(fs::exists(dropin())) << toml;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find("job-unit-limits: "), std::string::npos) << err;
  }
}

TEST_F(JobUnitLimitsTest, AMissingConfigOrBadArgumentsStillExitZero) {
  std::ostringstream err;
  EXPECT_EQ(runJobUnitLimits({"--config", (dir_ / "absent.toml").string(), "--out", out().string()}, err), 0);
  EXPECT_NE(err.str().find("absent.toml"), std::string::npos) << err.str();
  EXPECT_EQ(runJobUnitLimits({"--bogus"}, err), 0);
  EXPECT_EQ(runJobUnitLimits({}, err), 0);
  EXPECT_FALSE(fs::exists(out()));
}

TEST(JobUnitLimitsDropInTest, NoValueCanInjectADirective) {
  // Non-positive values (config never allows them) write nothing.
  const std::string text = jobUnitLimitsDropIn(WorkLimits{-1, 0, -5});
  EXPECT_TRUE(directives(text).empty()) << text;
  const std::string big = jobUnitLimitsDropIn(WorkLimits{4194304, 18446744073709551615ULL, 10000});
  EXPECT_EQ(directives(big),
            (std::vector<std::string>{"TasksMax=4194304", "MemoryMax=18446744073709551615", "CPUWeight=10000"}));
}

TEST(JobUnitLimitsDropInTest, ParsingRoundTripsAndRefusesAnythingElse) {
  const WorkLimits limits{64, 1ULL << 30, 20};
  auto parsed = parseJobUnitLimitsDropIn(jobUnitLimitsDropIn(limits));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->pids_max, limits.pids_max);
  EXPECT_EQ(parsed->memory_max, limits.memory_max);
  EXPECT_EQ(parsed->cpu_weight, limits.cpu_weight);
  auto unset = parseJobUnitLimitsDropIn("[Service]\n");
  ASSERT_TRUE(unset);
  EXPECT_FALSE(unset->pids_max);
  for (const char* bad : {"TasksMax=infinity\n", "TasksMax=1 2\n", "MemoryMax=4G\n", "CPUWeight=-1\n",
                          "ExecStart=/bin/sh\n", "TasksMax\n", "TasksMax=0\n"}) {
    EXPECT_FALSE(parseJobUnitLimitsDropIn(bad)) << bad;
  }
}

TEST_F(JobUnitLimitsTest, DescribeSaysCurrentStaleOrMissing) {
  const WorkLimits configured{64, std::nullopt, std::nullopt};
  auto missing = describeJobUnitDropIn(dropin(), configured);
  EXPECT_EQ(missing.at("unit_dropin").as_string().subview().substr(0, 8), "missing:");

  generate("[work]\npids_max = 64\n");
  auto current = describeJobUnitDropIn(dropin(), configured);
  EXPECT_EQ(current.at("unit_dropin").as_string(), "current");
  EXPECT_EQ(current.at("unit").at("TasksMax").as_int64(), 64);
  EXPECT_TRUE(current.at("unit").at("MemoryMax").is_null());

  // The config changed (pids_max 128) without a daemon-reload.
  auto stale = describeJobUnitDropIn(dropin(), WorkLimits{128, std::nullopt, std::nullopt});
  EXPECT_EQ(stale.at("unit_dropin").as_string(), kDropInStale);
  EXPECT_EQ(stale.at("unit").at("TasksMax").as_int64(), 64);
  auto added = describeJobUnitDropIn(dropin(), WorkLimits{64, 1ULL << 30, std::nullopt});
  EXPECT_EQ(added.at("unit_dropin").as_string(), kDropInStale);
}

TEST_F(JobUnitLimitsTest, DescribeReadsNoFifoLinkOrOversizedFile) {
  fs::create_directories(dropin().parent_path());
  ASSERT_EQ(::mkfifo(dropin().c_str(), 0644), 0);  // would block a plain open()
  EXPECT_EQ(describeJobUnitDropIn(dropin(), {}).at("unit_dropin").as_string().subview().substr(0, 11), "unreadable:");
  fs::remove(dropin());
  writeFile(dir_ / "elsewhere", "[Service]\nTasksMax=64\n");
  fs::create_symlink(dir_ / "elsewhere", dropin());
  EXPECT_EQ(describeJobUnitDropIn(dropin(), {64, {}, {}}).at("unit_dropin").as_string().subview().substr(0, 11),
            "unreadable:");
  fs::remove(dropin());
  writeFile(dropin(), "[Service]\n" + std::string(kMaxDropInBytes, '#') + "\nTasksMax=64\n");
  EXPECT_EQ(describeJobUnitDropIn(dropin(), {64, {}, {}}).at("unit_dropin").as_string().subview().substr(0, 11),
            "unreadable:");
}

TEST_F(JobUnitLimitsTest, TheSystemdContainmentReportsTheDropInUnderWorkLimits) {
  generate("[work]\npids_max = 64\n");
  auto containment = makeSystemdContainment(
      std::shared_ptr<JobUnits>(), WorkLimits{128, std::nullopt, std::nullopt},
      [] { return std::unique_ptr<Containment>(); }, dropin());
  const auto described = containment->describe();
  EXPECT_EQ(described.at("limits").at("unit_dropin").as_string(), kDropInStale);
  EXPECT_EQ(described.at("limits").at("unit").at("TasksMax").as_int64(), 64);
}

// Under the job units, a limit the unit carries is enforced (by systemd,
// through cgroup v1 on a hybrid host), not "unavailable" for want of a v2
// controller for the leaf.
TEST_F(JobUnitLimitsTest, ALimitTheUnitCarriesIsEnforcedByTheUnitEvenWithoutV2Controllers) {
  generate("[work]\npids_max = 64\nmemory_max = \"1G\"\n");
  const WorkLimits configured{64, 1ULL << 30, std::nullopt};
  const auto hybrid = describeJobUnitLimits(dropin(), configured, {"cpu"});
  for (const auto& [limit, directive] : {std::pair{"pids_max", "TasksMax"}, std::pair{"memory_max", "MemoryMax"}}) {
    const auto& entry = hybrid.at(limit).as_object();
    EXPECT_FALSE(entry.contains("unavailable")) << limit << ": " << boost::json::serialize(entry);
    EXPECT_EQ(entry.at("enforced_by").as_string(), "unit") << limit;
    EXPECT_EQ(entry.at("directive").as_string(), directive) << limit;
    EXPECT_FALSE(entry.contains("leaf_file")) << limit;
  }
  EXPECT_EQ(hybrid.at("pids_max").at("value").as_int64(), 64);
  EXPECT_FALSE(hybrid.contains("cpu_weight"));  // not configured
  EXPECT_EQ(hybrid.at("unit_dropin").as_string(), "current");
  // Where system.slice has the v2 controller the shim writes the leaf too.
  const auto unified = describeJobUnitLimits(dropin(), configured, {"pids", "memory"});
  EXPECT_EQ(unified.at("pids_max").at("leaf_file").as_string(), "pids.max");
  EXPECT_EQ(unified.at("pids_max").at("enforced_by").as_string(), "unit");
}

TEST_F(JobUnitLimitsTest, WithoutTheDropInOnlyTheLeafOrNothingEnforcesALimit) {
  const WorkLimits configured{64, std::nullopt, 50};
  const auto described = describeJobUnitLimits(dropin(), configured, {"pids"});
  EXPECT_EQ(described.at("pids_max").at("enforced_by").as_string(), "job shim");
  const std::string why(described.at("cpu_weight").at("unavailable").as_string());
  EXPECT_NE(why.find("CPUWeight"), std::string::npos) << why;
  EXPECT_NE(why.find("missing"), std::string::npos) << why;
}

TEST_F(JobUnitLimitsTest, TheSystemdContainmentSaysTheUnitsEnforceTheLimits) {
  generate("[work]\npids_max = 64\n");
  auto containment = makeSystemdContainment(
      std::shared_ptr<JobUnits>(), WorkLimits{64, std::nullopt, std::nullopt},
      [] { return std::unique_ptr<Containment>(); }, dropin());
  const auto described = containment->describe();
  const auto& pids = described.at("limits").at("pids_max").as_object();
  EXPECT_FALSE(pids.contains("unavailable")) << boost::json::serialize(pids);
  EXPECT_EQ(pids.at("enforced_by").as_string(), "unit");
}

}  // namespace
}  // namespace phonefarm::exec
