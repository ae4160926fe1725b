// WorkFixture: an AgentFixture whose agent really runs work — as `nobody`, in
// a cgroup v2 subtree of its own (created per test under the detected cgroup2
// root and killed and removed afterwards, so a failing test leaves no process
// behind) — plus the waits the execution tests need.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "agent/exec/cgroup_tree.hpp"
#include "agent/exec/work_limits.hpp"
#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {

class WorkFixture : public AgentFixture {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    if (auto root = exec::detectCgroupRoot("")) {
      cgroup_ = *root / ("phonefarm-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
      std::filesystem::create_directory(cgroup_);
    }
    std::filesystem::create_directories(outDir());
    std::filesystem::permissions(outDir(), std::filesystem::perms(0777), std::filesystem::perm_options::replace);
    AgentFixture::SetUp();
  }

  void TearDown() override {
    AgentFixture::TearDown();
    if (!cgroup_.empty()) {
      // Whatever a test left running dies with its subtree.
      std::ofstream(cgroup_ / "cgroup.kill") << "1";
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      auto populated = [this] {
        auto r = exec::isPopulated(cgroup_);
        return r && *r;
      };
      while (populated() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      removeCgroupTree(cgroup_);
    }
    removeV1Cgroups(dir_.path() / stateDirSetting() / "executions");
  }

  // The v1 cgroups of the work limits (work_limits.hpp) that this test's
  // executions left: nobody releases them when a test ends with its work
  // still running (killed with the subtree above). Empty by now; only this
  // test's execution ids, so a parallel test's cgroups stay.
  static void removeV1Cgroups(const std::filesystem::path& executions) {
    std::ifstream cgroup_in("/proc/self/cgroup");
    std::ifstream mounts_in("/proc/self/mountinfo");
    std::stringstream cgroup_text;
    std::stringstream mounts_text;
    cgroup_text << cgroup_in.rdbuf();
    mounts_text << mounts_in.rdbuf();
    for (const char* controller : {"pids", "memory", "cpu"}) {
      const auto own = exec::v1CgroupDir(cgroup_text.str(), mounts_text.str(), controller);
      if (!own) continue;
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator(executions, ec)) {
        ::rmdir((*own / exec::CgroupTree::kManagedDirName / entry.path().filename()).c_str());
      }
    }
  }

  static void removeCgroupTree(const std::filesystem::path& dir) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.is_directory(ec)) removeCgroupTree(entry.path());
    }
    ::rmdir(dir.c_str());
  }

  virtual std::string cgroupRootConfig() const { return cgroup_.string(); }
  virtual std::string onShutdown() const { return "keep"; }
  // The [reset] table. The execution tests have no adb server: a reset after a
  // forced kill could only fail and park the phone, so none is requested.
  virtual std::string resetConfig() const { return "[reset]\non_forced_cancel = false\n"; }
  // The execution tests have no phones attached: work runs regardless.
  virtual bool waitForDevice() const { return false; }

  // More keys of the [work] table (e.g. allowed_env).
  virtual std::string moreWorkKeys() const { return ""; }

  std::string workConfig() const override {
    return "[work]\nrun_as = \"nobody\"\nallowed_command_prefixes = [\"" + jobsDir().string() +
           "/\", \"/usr/bin/\"]\ncgroup_root = \"" + cgroupRootConfig() + "\"\non_shutdown = \"" + onShutdown() +
           "\"\n" + "wait_for_device = " + (waitForDevice() ? "true" : "false") + "\n" + moreWorkKeys() + resetConfig();
  }

  // A job that handles SIGTERM (records it and the cancel file in $1.signals
  // and $1.notice), writes its pid to $1.pid and keeps running.
  std::string stubbornJob() const {
    return writeJob("stubborn.sh",
                    "#!/bin/sh\n"
                    "trap 'echo TERM >> \"$1.signals\"; cat \"$PHONEFARM_CANCEL_FILE\" > \"$1.notice\"' TERM\n"
                    "echo $$ > \"$1.pid\"\n"
                    "while :; do sleep 1 & wait $!; done\n");
  }

  // Where jobs write what the test checks (mode 0777: they run as nobody).
  std::filesystem::path outDir() const { return dir_.path() / "out"; }

  // Submits one process on `phone` whose items run `commands` (argv each).
  boost::json::object submitWork(const std::string& process_id, const std::vector<std::vector<std::string>>& commands,
                                 const std::string& phone = "phone_01", std::optional<int> timeout_seconds = {},
                                 const std::string& stop_signal = "SIGTERM") {
    boost::json::array items;
    for (std::size_t i = 0; i < commands.size(); ++i) {
      boost::json::array argv;
      for (const auto& a : commands[i]) argv.emplace_back(a);
      boost::json::object item{{"queue_item_id", process_id + "-q" + std::to_string(i)},
                               {"command", std::move(argv)},
                               {"stop_signal", stop_signal}};
      if (timeout_seconds) item["timeout_seconds"] = *timeout_seconds;
      items.push_back(std::move(item));
    }
    boost::json::object body{{"process_id", process_id},
                             {"phone_id", phone},
                             {"account_id", "account_1"},
                             {"queue_items", std::move(items)}};
    auto r = call("POST", "/processes", boost::json::serialize(body));
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? r.json().as_object() : boost::json::object{};
  }

  boost::json::object getProcess(const std::string& process_id) {
    auto r = call("GET", "/processes/" + process_id, "", kReadToken);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? r.json().as_object() : boost::json::object{};
  }

  // Polls GET until `pred` holds (or the deadline passes: a test failure).
  boost::json::object waitForProcess(const std::string& process_id,
                                     const std::function<bool(const boost::json::object&)>& pred,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    boost::json::object p;
    while (std::chrono::steady_clock::now() < deadline) {
      p = getProcess(process_id);
      if (!p.empty() && pred(p)) return p;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "timed out waiting on process " << process_id << ": " << boost::json::serialize(p)
                  << "\nagent output:\n"
                  << agent_->output();
    return p;
  }

  boost::json::object waitForStatus(const std::string& process_id, const std::string& status,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    return waitForProcess(
        process_id, [&](const boost::json::object& p) { return p.at("status") == status.c_str(); }, timeout);
  }

  boost::json::object waitForItem(const std::string& process_id, std::size_t index, const std::string& status) {
    return waitForProcess(process_id, [&](const boost::json::object& p) {
      return p.at("queue_items").at(index).at("status") == status.c_str();
    });
  }

  // Waits until `path` holds at least one complete line (a shell's `>>`
  // creates the file before it writes); returns the content.
  std::string waitForLine(const std::filesystem::path& path) {
    return waitForFile(path, [](const std::string& t) { return !t.empty() && t.back() == '\n'; });
  }

  // Waits until `path` exists and `pred(content)` holds; returns the content.
  std::string waitForFile(
      const std::filesystem::path& path,
      const std::function<bool(const std::string&)>& pred = [](const std::string&) { return true; },
      std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string content;
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(path);
      if (in) {
        std::stringstream ss;
        ss << in.rdbuf();
        content = ss.str();
        if (pred(content)) return content;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "timed out waiting for " << path << " (content: " << content << ")";
    return content;
  }
  // The pid a job wrote to out/<name>.pid, once the line is complete (a
  // reader racing the job's `echo` could see an empty file).
  pid_t waitForPid(const std::string& name) {
    const auto text =
        waitForFile(outDir() / (name + ".pid"), [](const std::string& t) { return !t.empty() && t.back() == '\n'; });
    const auto pids = parsePids(text);
    return pids.empty() ? 0 : pids.front();
  }

  static std::vector<pid_t> parsePids(const std::string& text) {
    std::vector<pid_t> pids;
    std::istringstream in(text);
    long v = 0;
    while (in >> v) pids.push_back(static_cast<pid_t>(v));
    return pids;
  }

  // Alive = exists and is not a zombie (a zombie awaits a reaper outside our control).
  static bool alive(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(in, text)) return false;
    const auto close = text.rfind(')');
    return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z' && text[close + 2] != 'X';
  }

  static std::int64_t parseTimeMs(const boost::json::value& v);

  std::filesystem::path cgroup_;
};

// RFC 3339 "2026-11-28T13:45:12.345Z" -> ms since the epoch.
inline std::int64_t WorkFixture::parseTimeMs(const boost::json::value& v) {
  const std::string s(v.as_string());
  std::tm tm{};
  int ms = 0;
  std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
              &tm.tm_sec, &ms);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::int64_t>(::timegm(&tm)) * 1000 + ms;
}

}  // namespace phonefarm::testing
