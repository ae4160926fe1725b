// The job units' containment (agent/exec/systemd_containment.hpp) against a
// fake JobUnits: what it asks systemd for (the instance name of the
// execution id, the command in the control dir's argv file), what it makes
// of the answer, and what it refuses before asking. The real D-Bus path runs
// under systemd in scripts/test-systemd.
#include "agent/exec/systemd_containment.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "agent/exec/job_unit_shim.hpp"

namespace phonefarm::exec {
namespace {

namespace fs = std::filesystem;

class FakeJobUnits final : public JobUnits {
 public:
  Result<JobUnitStarted> start(const std::string& unit, std::chrono::milliseconds /*timeout*/) override {
    started.push_back(unit);
    if (refuse)
      return makeError(ErrorKind::kInvalid, "StartUnit " + unit + ": org.freedesktop.DBus.Error.AccessDenied");
    return answer;
  }
  Status kill(const std::string& unit, int sig) override {
    killed.emplace_back(unit, sig);
    return okStatus();
  }

  std::vector<std::string> started;
  std::vector<std::pair<std::string, int>> killed;
  JobUnitStarted answer;
  bool refuse = false;
};

class SystemdContainmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/phonefarm-systemd-containment-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    containment_ = makeSystemdContainment(units_, WorkLimits{}, [] { return std::unique_ptr<Containment>(); });
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  LaunchRequest request(const std::string& id) const {
    LaunchRequest r;
    r.execution_id = id;
    r.control_dir = dir_;
    r.command = {"/opt/phonefarm/jobs/run.sh", "--flag", "a b"};
    return r;
  }

  fs::path dir_;
  std::shared_ptr<FakeJobUnits> units_ = std::make_shared<FakeJobUnits>();
  std::unique_ptr<Containment> containment_;
};

TEST_F(SystemdContainmentTest, StartsTheExecutionsInstanceWithItsCommandInTheControlDir) {
  const std::string id = "6f1c2a9e-1b2c-4d3e-8f90-0123456789ab";
  auto container = containment_->launch(request(id));
  ASSERT_TRUE(container) << container.error().message;
  EXPECT_EQ(units_->started, std::vector<std::string>{"phonefarm-job@" + id + ".service"});
  std::ifstream in(dir_ / kArgvFileName, std::ios::binary);
  const std::string argv((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  constexpr char kExpected[] = "/opt/phonefarm/jobs/run.sh\0--flag\0a b";  // and the literal's NUL
  EXPECT_EQ(argv, std::string(kExpected, sizeof kExpected));
  EXPECT_EQ((*container)->info().runtime, kRuntimeSystemdUnit);
  EXPECT_EQ(containment_->runtime(), kRuntimeSystemdUnit);
  EXPECT_EQ(containment_->describe().at("launcher").as_string(), "systemd");
  // systemd reported no cgroup (the unit is gone already): the tree has ended.
  auto gone = (*container)->poll();
  ASSERT_TRUE(gone);
  EXPECT_TRUE(*gone);
}

TEST_F(SystemdContainmentTest, AnIdOutsideThePolkitPatternIsNeverSentToSystemd) {
  for (const std::string bad : {"../phonefarm-agent", "a.b", "x y", ""}) {
    EXPECT_FALSE(containment_->launch(request(bad))) << bad;
  }
  EXPECT_TRUE(units_->started.empty());
  EXPECT_FALSE(fs::exists(dir_ / kArgvFileName));
}

TEST_F(SystemdContainmentTest, AStartRefusedBySystemdFailsTheLaunchWithItsReason) {
  units_->refuse = true;
  auto container = containment_->launch(request("abc"));
  ASSERT_FALSE(container);
  EXPECT_NE(container.error().message.find("AccessDenied"), std::string::npos) << container.error().message;
}

// The leader is the unit's MainPID, signalled through a pidfd (here: this
// process's own child standing in for the shim).
TEST_F(SystemdContainmentTest, SignalsTheUnitsMainPid) {
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    _exit(0);
  }
  units_->answer.main_pid = child;
  auto container = containment_->launch(request("abc"));
  ASSERT_TRUE(container) << container.error().message;
  EXPECT_EQ((*container)->info().leader_pid, child);
  EXPECT_TRUE((*container)->signalLeader(SIGTERM));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
}

// The unit's cgroups go with the unit: the note comes from what its shim
// read when the command ended (status.json's limit_hits), with or without
// a container left to adopt, in the same words as the direct launcher's.
TEST(SystemdContainmentLimits, TheNoteComesFromTheShimsReport) {
  auto units = std::make_shared<FakeJobUnits>();
  auto containment = makeSystemdContainment(units, WorkLimits{64, 1ULL << 20, std::nullopt},
                                            [] { return std::unique_ptr<Containment>(); });
  char pattern[] = "/tmp/phonefarm-systemd-containment-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  LaunchRequest r;
  r.execution_id = "abc";
  r.control_dir = pattern;
  r.command = {"/bin/true"};
  auto container = containment->launch(r);
  fs::remove_all(pattern);
  ASSERT_TRUE(container) << container.error().message;
  EXPECT_EQ((*container)->limitNote(std::nullopt), std::nullopt);
  EXPECT_EQ((*container)->limitNote(LimitHits{}), std::nullopt);
  EXPECT_EQ((*container)->limitNote(LimitHits{0, 5}),
            limitNote(LimitHits{0, 5}, WorkLimits{64, 1ULL << 20, std::nullopt}));
  EXPECT_EQ(*(*container)->limitNote(LimitHits{0, 5}),
            "stopped by the pids limit: pids_max 64 reached (5 fork(s) refused)");
  const auto oom = containment->releaseLimits("abc", LimitHits{1, 0});
  ASSERT_TRUE(oom);
  EXPECT_NE(oom->find("OOM kill"), std::string::npos) << *oom;
  EXPECT_EQ(containment->releaseLimits("abc", std::nullopt), std::nullopt);
}

}  // namespace
}  // namespace phonefarm::exec
