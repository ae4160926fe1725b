// Retention on the real agent: with days as small as the config allows
// (fractions: 0.00001 days = 0.864 s) and a sweep every second, a finished
// process goes with its audit trail, and its execution directory goes even
// though the job locked directories in it (chmod 000) and planted a link to
// a directory outside; work that is running or queued at the same time is
// never touched, and the metrics count what was deleted.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/integration/work_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace fs = std::filesystem;

class Retention : public WorkFixture {
 protected:
  std::string extraConfig() const override {
    return "[retention]\nprocesses_days = 0.00003\nexecutions_days = 0.00001\nsweep_interval_seconds = 1\n";
  }

  std::string executionId(const std::string& process_id) {
    auto r = call("GET", "/processes/" + process_id + "/items/" + process_id + "-q0/logs", "", kReadToken);
    EXPECT_EQ(r.status, 200) << r.body;
    const std::string id = r.header("x-phonefarm-execution-id");
    EXPECT_FALSE(id.empty());
    return id;
  }
  // The execution's control dir (logs, status) and work dir (the job's cwd).
  fs::path controlDir(const std::string& id) const { return dir_.path() / "state" / "executions" / id; }
  fs::path workDir(const std::string& id) const { return dir_.path() / "state" / "workdirs" / id; }

  // Polls until `pred` holds; false at the deadline.
  static bool eventually(const std::function<bool()>& pred, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return pred();
  }

  double metric(const std::string& series) {
    auto r = call("GET", "/metrics", "", kReadToken);
    const auto at = r.body.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(r.body.substr(at + series.size() + 2));
  }
};

TEST_F(Retention, DeletesFinishedWorkAndItsLockedFilesButNothingThatRuns) {
  const fs::path outside = outDir() / "outside";
  fs::create_directories(outside);
  writeFile(outside / "precious", "keep me", 0644);
  const std::string locker =
      writeJob("locker.sh",
               "#!/bin/sh\n"
               "echo hello\n"
               "mkdir -p locked/inner && echo x > locked/inner/f && chmod 000 locked/inner locked\n"
               "ln -s \"$1\" escape\n");
  submitWork("done", {{locker, outside.string()}});
  waitForStatus("done", "succeeded");
  const std::string done_id = executionId("done");
  ASSERT_TRUE(fs::exists(controlDir(done_id) / "stdout.log"));
  ASSERT_TRUE(fs::exists(fs::symlink_status(workDir(done_id) / "escape")));

  // Running on phone_02 all along, with a process queued behind it and one
  // cancelled while queued (terminal: it goes, audit trail included).
  const std::string stubborn = stubbornJob();
  submitWork("running", {{stubborn, (outDir() / "running").string()}}, "phone_02");
  waitForItem("running", 0, "executing");
  submitWork("queued", {{locker, outside.string()}}, "phone_02");
  submitWork("cancelled", {{locker, outside.string()}}, "phone_02");
  ASSERT_EQ(call("POST", "/processes/cancelled/cancel", cancelBody(), kOperateToken).status, 200);
  const std::string running_id = executionId("running");

  for (const fs::path& dir : {controlDir(done_id), workDir(done_id)}) {
    EXPECT_TRUE(eventually([&] { return !fs::exists(fs::symlink_status(dir)); }))
        << "execution directory " << dir << " still there\n"
        << agent_->output();
  }
  EXPECT_TRUE(eventually([&] { return call("GET", "/processes/done", "", kReadToken).status == 404; }));
  EXPECT_TRUE(eventually([&] { return call("GET", "/processes/cancelled", "", kReadToken).status == 404; }));
  EXPECT_TRUE(fs::exists(outside / "precious"));  // the planted link was not followed

  // Several sweeps later, what runs or waits is all there.
  const double sweeps = metric("phonefarm_retention_sweeps_total");
  EXPECT_TRUE(eventually([&] { return metric("phonefarm_retention_sweeps_total") >= sweeps + 2; }));
  EXPECT_EQ(getProcess("running").at("status"), "running");
  EXPECT_EQ(getProcess("queued").at("status"), "queued");
  EXPECT_TRUE(fs::exists(controlDir(running_id)));
  EXPECT_TRUE(fs::exists(workDir(running_id)));

  EXPECT_GE(metric(R"(phonefarm_retention_rows_deleted_total{table="processes"})"), 2);
  EXPECT_GE(metric(R"(phonefarm_retention_rows_deleted_total{table="cancel_audit"})"), 1);
  EXPECT_GE(metric("phonefarm_retention_execution_dirs_removed_total"), 1);
  EXPECT_EQ(metric("phonefarm_retention_execution_dir_failures_total"), 0);
  EXPECT_GT(metric(R"(phonefarm_retention_bytes_reclaimed_total{source="execution_dirs"})"), 0);
  EXPECT_TRUE(agent_->findLine("retention.swept").has_value());
}

}  // namespace
}  // namespace phonefarm::testing
