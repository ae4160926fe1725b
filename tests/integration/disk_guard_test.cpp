// The disk guard on the real agent, with state_dir on a small tmpfs that a
// job fills to the last byte: new submissions get 503 saying why, while
// reads, cancels and their commits keep working (the store's reserve); GET
// /readyz and the metrics report the low disk; once space is back work is
// accepted again; and the store survives intact (integrity_check). The tmpfs
// is unmounted even when the test fails.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "tests/integration/work_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMiB = 1024 * 1024;

class DiskGuard : public WorkFixture {
 protected:
  void SetUp() override {
    fs::create_directories(stateDir());
    const std::string options = "size=48m,mode=0711";
    if (::mount("tmpfs", stateDir().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      FAIL() << "mount tmpfs on " << stateDir() << ": " << std::strerror(errno) << " (the test needs root)";
    }
    mounted_ = true;
    WorkFixture::SetUp();
  }

  void TearDown() override {
    WorkFixture::TearDown();  // the agent and the work are gone first
    if (mounted_) {
      EXPECT_EQ(::umount2(stateDir().c_str(), MNT_DETACH), 0) << std::strerror(errno);
    }
  }

  std::string extraConfig() const override {
    return "[storage]\nmin_free_bytes = " + std::to_string(8 * kMiB) + "\nreserve_bytes = " + std::to_string(4 * kMiB) +
           "\n";
  }

  fs::path stateDir() const { return dir_.path() / "state"; }

  std::uint64_t freeBytes() const {
    struct statvfs vfs {};
    if (::statvfs(stateDir().c_str(), &vfs) != 0) return 0;
    return static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }

  static bool eventually(const std::function<bool()>& pred, std::chrono::seconds timeout = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return pred();
  }

  std::string metrics() { return call("GET", "/metrics", "", kReadToken).body; }

  bool mounted_ = false;
};

TEST_F(DiskGuard, AJobFillingTheDiskStopsNewWorkButNotCancelsReadsOrTheStore) {
  // The reserve is in place before anything runs.
  ASSERT_TRUE(eventually([&] { return fs::exists(stateDir() / "disk-reserve"); }));
  EXPECT_EQ(call("GET", "/readyz", "", kReadToken).status, 200);

  // It fills the disk (cat stops at ENOSPC), then says so and stays.
  const std::string filler = writeJob("filler.sh",
                                      "#!/bin/sh\n"
                                      "cat /dev/zero > fill 2>/dev/null\n"
                                      "echo $$ > \"$1.pid\"\n"
                                      "while :; do sleep 1 & wait $!; done\n");
  submitWork("filler", {{filler, (outDir() / "filler").string()}});
  submitWork("waiting-1", {{filler, (outDir() / "w1").string()}});
  submitWork("waiting-2", {{filler, (outDir() / "w2").string()}});
  waitForPid("filler");
  EXPECT_LT(freeBytes(), kMiB) << "the job did not fill the disk";

  // New work: 503, and the detail says why.
  boost::json::object body{
      {"process_id", "refused"},
      {"phone_id", "phone_02"},
      {"account_id", "a"},
      {"queue_items",
       boost::json::array{boost::json::object{{"command", boost::json::array{(jobsDir() / "post.sh").string()}}}}}};
  auto refused = call("POST", "/processes", boost::json::serialize(body));
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("Disk space low"), std::string::npos) << refused.body;
  EXPECT_NE(refused.body.find("min_free_bytes"), std::string::npos) << refused.body;

  // Reads, and cancels that commit, still work on the full disk.
  EXPECT_EQ(call("GET", "/processes", "", kReadToken).status, 200);
  for (const char* id : {"waiting-1", "waiting-2"}) {
    auto r = call("POST", std::string("/processes/") + id + "/cancel", cancelBody(), kOperateToken);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(getProcess(id).at("status"), "cancelled");
  }
  auto hard = call("POST", "/processes/filler/cancel", cancelBody("hard"), kOperateToken);
  EXPECT_EQ(hard.status, 200) << hard.body << "\n" << agent_->output();
  waitForStatus("filler", "cancelled");

  auto ready = call("GET", "/readyz", "", kReadToken);
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_EQ(ready.json().at("disk").at("low"), true) << ready.body;
  const std::string low = metrics();
  EXPECT_NE(low.find("\nphonefarm_disk_low 1\n"), std::string::npos) << low;
  EXPECT_NE(low.find("\nphonefarm_disk_refused_submissions_total 1\n"), std::string::npos) << low;

  // Space back: the reserve is allocated again and work is accepted.
  for (const auto& entry : fs::recursive_directory_iterator(stateDir() / "workdirs")) {
    if (entry.path().filename() == "fill") fs::remove(entry.path());
  }
  EXPECT_TRUE(eventually([&] { return call("GET", "/readyz", "", kReadToken).status == 200; }));
  EXPECT_TRUE(eventually([&] { return fs::exists(stateDir() / "disk-reserve"); }));
  EXPECT_EQ(call("POST", "/processes", boost::json::serialize(body)).status, 201);

  // The store came through whole.
  ASSERT_EQ(agent_->stop(SIGTERM, std::chrono::seconds(10)), 0);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2((stateDir() / "agent.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "ok");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

}  // namespace
}  // namespace phonefarm::testing
