// Unit tests for the executor: its logic against a fake event loop (stepped by
// hand on a fake millisecond timeline), a fake containment runtime (the test
// decides when a tree is gone and what its shim wrote; both in tests/fakes/),
// a real store in a temp dir and a FakeClock. The cancel cases go through the real CancelService.
// Everything executor-side runs on the test thread (the fake loop's thread);
// the store completes jobs on its own thread and the executor posts back, so
// the test waits on the loop's posted queue (condition variable, 5 s real
// deadline), never sleeps.
#include "agent/exec/executor.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/cancel/cancel_service.hpp"
#include "agent/exec/exec_shim.hpp"
#include "agent/exec/exec_status.hpp"
#include "common/store/execution_repository.hpp"
#include "common/store/process_repository.hpp"
#include "tests/fakes/fake_clock.hpp"
#include "tests/fakes/fake_containment.hpp"
#include "tests/fakes/fake_loop.hpp"

namespace phonefarm::exec {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr const char* kBootId = "boot-test";
constexpr const char* kShim = "/usr/libexec/phonefarm/phonefarm-agent";

using os::FakeLoop;

// ---------------------------------------------------------------- fakes

class FakeResets final : public PhoneResetRequester {
 public:
  std::optional<boost::json::object> requestReset(const std::string& phone_id, const std::string& trigger) override {
    requests.emplace_back(phone_id, trigger);
    return boost::json::object{{"reset_id", "reset-" + std::to_string(requests.size())}, {"status", "pending"}};
  }
  std::vector<std::pair<std::string, std::string>> requests;
};

// ---------------------------------------------------------------- helpers

struct ItemSpec {
  std::vector<std::string> command{"/opt/jobs/post.sh", "--x"};
  std::optional<std::int64_t> timeout_seconds;
  std::string stop_signal = "SIGTERM";
  EnvList env;
};

ItemSpec runs(std::vector<std::string> command) {
  ItemSpec spec;
  spec.command = std::move(command);
  return spec;
}

std::string argValue(const LaunchRequest& r, const std::string& flag) {
  for (std::size_t i = 0; i + 1 < r.argv.size() && r.argv[i] != "--"; ++i) {
    if (r.argv[i] == flag) return r.argv[i + 1];
  }
  return "<unset>";
}

// The entries of the env file the agent left in the control dir for the
// shim (the fake runtime runs no shim, so nothing has taken it).
std::vector<std::string> envOf(const LaunchRequest& r) {
  std::ifstream in(std::filesystem::path(argValue(r, "--control-dir")) / kEnvFileName, std::ios::binary);
  std::vector<std::string> env;
  for (std::string entry; std::getline(in, entry, '\0');) env.push_back(entry);
  return env;
}

std::string envValue(const LaunchRequest& r, const std::string& key) {
  for (const auto& kv : envOf(r)) {
    if (kv.rfind(key + "=", 0) == 0) return kv.substr(key.size() + 1);
  }
  return "<unset>";
}

// The command after "--".
std::vector<std::string> commandOf(const LaunchRequest& r) {
  auto it = std::find(r.argv.begin(), r.argv.end(), "--");
  if (it == r.argv.end()) return {};
  return {it + 1, r.argv.end()};
}

// A JSON value as text (strings unquoted), for comparisons.
std::string str(const boost::json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : boost::json::serialize(v);
}

boost::json::object readJsonFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return boost::json::parse(ss.str()).as_object();
}

class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("executor-test-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store::StoreOptions so;
    so.path = dir_ / "agent.db";
    store_ = std::make_unique<store::Store>(so);
    options_.state_dir = dir_ / "state";
    options_.run_as = "nobody";  // CI runs the unit tests as root: the executor chowns the exec dir to it
    options_.shim_binary = kShim;
    options_.phones = {{"phone_01", "SERIAL-01", std::nullopt}, {"phone_02", "SERIAL-02", std::nullopt}};
    options_.boot_id = kBootId;
  }

  void TearDown() override {
    // Drain the store first: its completions post into the (still alive) loop.
    store_->stop();
    cancels_.reset();
    executor_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // ---- store access (test thread; blocks until the job's commit)

  template <class T>
  T query(std::function<T(store::Db&)> fn) {
    auto done = std::make_shared<std::promise<Result<T>>>();
    auto future = done->get_future();
    store_->submit<T>(std::move(fn), [done](Result<T> r) { done->set_value(std::move(r)); });
    if (future.wait_for(10s) != std::future_status::ready) throw std::runtime_error("store job timed out");
    auto r = future.get();
    if (!r) throw std::runtime_error("store job failed: " + r.error().message);
    return std::move(r).value();
  }

  Process makeProcess(const std::string& id, const std::string& phone, std::vector<ItemSpec> items = {ItemSpec{}}) {
    Process p;
    p.process_id = id;
    p.phone_id = phone;
    p.account_id = "acc_" + id;
    p.capability_request_id = id;
    p.requested_by = {{"system", "scheduler"}};
    p.created_at = clock_.wallNowMs();
    p.updated_at = p.created_at;
    for (std::size_t i = 0; i < items.size(); ++i) {
      QueueItem q;
      q.queue_item_id = id + "-q" + std::to_string(i);
      q.position = static_cast<int>(i);
      q.command = items[i].command;
      q.env = items[i].env;
      q.timeout_seconds = items[i].timeout_seconds;
      q.stop_signal = items[i].stop_signal;
      p.items.push_back(std::move(q));
    }
    return p;
  }

  void insert(const Process& p) {
    query<Unit>([p](store::Db& db) {
      store::ProcessRepository(db).insertProcess(p);
      return Unit{};
    });
  }
  void addProcess(const std::string& id, const std::string& phone, std::vector<ItemSpec> items = {ItemSpec{}}) {
    insert(makeProcess(id, phone, std::move(items)));
  }

  Process load(const std::string& id) {
    return query<Process>([id](store::Db& db) {
      auto p = store::ProcessRepository(db).loadProcess(id);
      if (!p) throw std::runtime_error("no process " + id);
      return *p;
    });
  }
  ProcessStatus statusOf(const std::string& id) { return load(id).status; }

  std::vector<store::EscalationRow> pendingEscalations() {
    return query<std::vector<store::EscalationRow>>(
        [](store::Db& db) { return store::ExecutionRepository(db).pendingEscalations(); });
  }
  std::vector<store::ExecutionRow> openExecutions() {
    return query<std::vector<store::ExecutionRow>>(
        [](store::Db& db) { return store::ExecutionRepository(db).openExecutions(); });
  }

  // ---- the executor

  void makeExecutor() {
    executor_ = std::make_unique<Executor>(options_, *store_, clock_, loop_, containment_, resets_);
    cancels_ = std::make_unique<cancel::CancelService>(
        *store_, clock_, *executor_, [this](std::function<void()> fn) { loop_.post(std::move(fn)); }, kBootId);
  }

  // Constructs and starts the executor; returns once recovery has committed.
  void startExecutor() {
    if (!executor_) makeExecutor();
    bool ready = false;
    executor_->start([&ready] { ready = true; });
    ASSERT_TRUE(loop_.runUntil([&] { return ready; })) << "recovery never completed";
  }

  // Waits until everything the executor set in motion has happened: a store
  // round trip (jobs run in order) after which the loop ran nothing but the
  // barrier's own callback.
  void settle() {
    for (int round = 0; round < 100; ++round) {
      auto flag = std::make_shared<bool>(false);
      const auto before = loop_.ran();
      store_->submit<Unit>([](store::Db&) { return Unit{}; },
                           [this, flag](Result<Unit>) { loop_.post([flag] { *flag = true; }); });
      ASSERT_TRUE(loop_.runUntil([&] { return *flag; })) << "store barrier never completed";
      loop_.runDueTimers();
      if (loop_.ran() - before == 1) return;
    }
    FAIL() << "the executor never settled";
  }

  bool waitLaunches(std::size_t n) {
    return loop_.runUntil([&] { return containment_.launched.size() >= n; });
  }
  bool waitFinished(std::uint64_t n) {
    return loop_.runUntil([&] { return executor_->stats().finished >= n; });
  }

  const LaunchRequest& launch(std::size_t i) { return containment_.launched.at(i).request; }
  ContainerState& tree(std::size_t i) { return *containment_.launched.at(i).state; }
  std::string itemOf(std::size_t i) { return envValue(launch(i), "PHONEFARM_QUEUE_ITEM_ID"); }
  std::filesystem::path execDir(std::size_t i) { return argValue(launch(i), "--control-dir"); }
  std::filesystem::path workDir(std::size_t i) { return argValue(launch(i), "--work-dir"); }

  // The end of a tree as the runtime reports it: the shim wrote its status
  // (unless `status` is nullopt: killed before it could), the cgroup is empty,
  // the watched fd becomes readable.
  void endTree(ContainerState& s, const std::filesystem::path& exec_dir, std::optional<ExecStatus> status) {
    if (status) {
      ASSERT_TRUE(writeExecStatus(exec_dir, *status).ok());
    }
    s.gone = true;
    loop_.fire(s.fd);
  }
  static ExecStatus exited(int code) {
    ExecStatus st;
    st.pid = 4321;
    st.exit_code = code;
    st.started_at = 1'795'000'000'000;
    st.ended_at = 1'795'000'001'000;
    return st;
  }
  static ExecStatus signalled(const std::string& sig) {
    ExecStatus st = exited(0);
    st.exit_code.reset();
    st.signal = sig;
    return st;
  }
  // Ends launch i with an exit code and waits for the end to be committed.
  void endLaunch(std::size_t i, int code) {
    const auto before = executor_->stats().finished;
    endTree(tree(i), execDir(i), exited(code));
    ASSERT_TRUE(waitFinished(before + 1)) << "the end of " << itemOf(i) << " was never committed";
  }

  cancel::CancelOutcome cancelProcess(const std::string& id, CancelStrategy strategy,
                                      std::int64_t force_after_seconds = 10) {
    cancel::CancelInput in;
    in.reason = "operator asked";
    in.requested_by = {{"system", "console"}, {"user", "alice"}};
    in.strategy = strategy;
    in.force_after_seconds = force_after_seconds;
    std::optional<Result<cancel::CancelOutcome>> out;
    cancels_->cancelProcess(id, in, [&out](Result<cancel::CancelOutcome> r) { out.emplace(std::move(r)); });
    if (!loop_.runUntil([&] { return out.has_value(); })) throw std::runtime_error("cancel never completed");
    if (!*out) throw std::runtime_error("cancel failed: " + out->error().message);
    return std::move(*out).value();
  }

  std::filesystem::path dir_;
  FakeClock clock_;
  FakeLoop loop_{clock_};
  FakeContainment containment_;
  FakeResets resets_;
  std::unique_ptr<store::Store> store_;
  ExecutorOptions options_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<cancel::CancelService> cancels_;
};

// ---------------------------------------------------------------- 1, 2: order

TEST_F(ExecutorTest, OnePhoneRunsItsProcessesFifoAndItemsInOrder) {
  addProcess("p1", "phone_01", {runs({"/opt/jobs/a.sh", "one"}), runs({"/opt/jobs/b.sh"})});
  addProcess("p2", "phone_01", {runs({"/opt/jobs/c.sh"})});
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  settle();
  ASSERT_EQ(containment_.launched.size(), 1u) << "a phone runs one item at a time";
  EXPECT_EQ(itemOf(0), "p1-q0");
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kRunning);
  EXPECT_EQ(load("p1").items[0].status, ItemStatus::kExecuting);
  EXPECT_EQ(statusOf("p2"), ProcessStatus::kQueued);

  // The shim's command line and the work's environment.
  const LaunchRequest& r = launch(0);
  ASSERT_GE(r.argv.size(), 6u);
  const std::filesystem::path exec_dir = options_.state_dir / "executions" / r.execution_id;
  const std::filesystem::path work_dir = options_.state_dir / "workdirs" / r.execution_id;
  EXPECT_THAT(r.argv,
              ElementsAre(kShim, "exec-shim", "--control-dir", exec_dir.string(), "--work-dir", work_dir.string(),
                          "--run-as", "nobody", "--log-max-bytes", "67108864", "--", "/opt/jobs/a.sh", "one"));
  EXPECT_THAT(commandOf(r), ElementsAre("/opt/jobs/a.sh", "one"));
  EXPECT_EQ(envValue(r, "ANDROID_SERIAL"), "SERIAL-01");
  EXPECT_EQ(envValue(r, "PHONEFARM_PROCESS_ID"), "p1");
  EXPECT_EQ(envValue(r, "PHONEFARM_QUEUE_ITEM_ID"), "p1-q0");
  EXPECT_EQ(envValue(r, "PHONEFARM_PHONE_ID"), "phone_01");
  EXPECT_EQ(envValue(r, "PHONEFARM_ACCOUNT_ID"), "acc_p1");
  EXPECT_EQ(envValue(r, "PHONEFARM_CANCEL_FILE"), (work_dir / "cancel.json").string());
  // The control dir is the agent's alone, and so is the env file in it.
  struct stat st {};
  ASSERT_EQ(::stat(exec_dir.c_str(), &st), 0) << exec_dir;
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::stat((exec_dir / kEnvFileName).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // The work dir is the agent's with run_as's group, 0770: the work's cwd.
  ASSERT_EQ(::stat(work_dir.c_str(), &st), 0) << work_dir;
  const passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_gid, nobody->pw_gid) << "needs root (CI runs unit tests as root)";
  EXPECT_EQ(st.st_mode & 07777, 0770u);
  EXPECT_TRUE(loop_.watching(tree(0).fd));
  // The execution row was opened before the launch, with the container's leader.
  settle();
  auto open = openExecutions();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].execution_id, r.execution_id);
  EXPECT_EQ(open[0].queue_item_id, "p1-q0");
  EXPECT_EQ(open[0].leader_pid, tree(0).info.leader_pid);

  endLaunch(0, 0);
  ASSERT_TRUE(waitLaunches(2));
  settle();
  ASSERT_EQ(containment_.launched.size(), 2u);
  EXPECT_EQ(itemOf(1), "p1-q1");
  EXPECT_THAT(commandOf(launch(1)), ElementsAre("/opt/jobs/b.sh"));
  EXPECT_FALSE(loop_.watching(tree(0).fd)) << "an ended tree is no longer watched";
  EXPECT_TRUE(tree(0).removed);
  {
    Process p1 = load("p1");
    EXPECT_EQ(p1.status, ProcessStatus::kRunning);
    EXPECT_EQ(p1.items[0].status, ItemStatus::kSucceeded);
    EXPECT_EQ(p1.items[0].exit_code, 0);
    EXPECT_EQ(p1.items[1].status, ItemStatus::kExecuting);
  }
  EXPECT_EQ(statusOf("p2"), ProcessStatus::kQueued);

  endLaunch(1, 0);
  ASSERT_TRUE(waitLaunches(3));
  settle();
  ASSERT_EQ(containment_.launched.size(), 3u);
  EXPECT_EQ(itemOf(2), "p2-q0");
  {
    Process p1 = load("p1");
    EXPECT_EQ(p1.status, ProcessStatus::kSucceeded);
    EXPECT_EQ(p1.items[1].status, ItemStatus::kSucceeded);
  }
  EXPECT_EQ(statusOf("p2"), ProcessStatus::kRunning);
  EXPECT_EQ(openExecutions().size(), 1u);
}

// What the job unit's shim read of the limits (status.json's limit_hits)
// reaches the container's note, which leads the item's note.
TEST_F(ExecutorTest, TheShimsLimitHitsBecomeTheItemsNote) {
  addProcess("p1", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  settle();
  ExecStatus status = exited(1);
  status.limit_hits = LimitHits{0, 5};
  endTree(tree(0), execDir(0), status);
  ASSERT_TRUE(waitFinished(1));
  settle();
  ASSERT_TRUE(tree(0).reported_hits.has_value()) << "limitNote() was not asked";
  EXPECT_EQ(*tree(0).reported_hits, (LimitHits{0, 5}));
  EXPECT_EQ(load("p1").items[0].note, "stopped by the pids limit: pids_max 64 reached (5 fork(s) refused)");
}

// What the shim's log relay dropped past [work] log_max_bytes becomes the
// item's note (after the exec error the shim reported) and is counted.
TEST_F(ExecutorTest, OutputDroppedPastTheLogCapIsNotedAndCounted) {
  options_.log_max_bytes = 4096;
  addProcess("p1", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  settle();
  EXPECT_EQ(argValue(launch(0), "--log-max-bytes"), "4096");
  ExecStatus status = exited(127);
  status.error = "exec /opt/jobs/a.sh: Permission denied";
  status.log_max_bytes = 4096;
  status.stdout_dropped = 10;
  status.stderr_dropped = 1;
  endTree(tree(0), execDir(0), status);
  ASSERT_TRUE(waitFinished(1));
  settle();
  const Process p1 = load("p1");
  EXPECT_EQ(p1.items[0].note,
            "exec /opt/jobs/a.sh: Permission denied; stdout truncated at 4 KiB: 10 bytes dropped; "
            "stderr truncated at 4 KiB: 1 byte dropped");
  EXPECT_EQ(executor_->stats().log_bytes_dropped_stdout, 10u);
  EXPECT_EQ(executor_->stats().log_bytes_dropped_stderr, 1u);
}

TEST_F(ExecutorTest, TwoPhonesRunConcurrently) {
  addProcess("p1", "phone_01");
  addProcess("p2", "phone_02");
  startExecutor();
  ASSERT_TRUE(waitLaunches(2));
  settle();
  ASSERT_EQ(containment_.launched.size(), 2u);
  std::map<std::string, std::string> serial_by_item;
  for (std::size_t i = 0; i < 2; ++i) serial_by_item[itemOf(i)] = envValue(launch(i), "ANDROID_SERIAL");
  EXPECT_EQ(serial_by_item, (std::map<std::string, std::string>{{"p1-q0", "SERIAL-01"}, {"p2-q0", "SERIAL-02"}}));
  auto executing = executor_->executingProcessIds();
  std::sort(executing.begin(), executing.end());
  EXPECT_THAT(executing, ElementsAre("p1", "p2"));
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kRunning);
  EXPECT_EQ(statusOf("p2"), ProcessStatus::kRunning);
}

TEST_F(ExecutorTest, APhoneThatCannotStartHoldsItsWorkUntilAnnounced) {
  std::atomic<bool> phone_01_ready{false};
  options_.can_start = [&](const std::string& phone_id) { return phone_id != "phone_01" || phone_01_ready.load(); };
  addProcess("p1", "phone_01");
  addProcess("p2", "phone_02");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  settle();
  ASSERT_EQ(containment_.launched.size(), 1u);
  EXPECT_EQ(envValue(launch(0), "ANDROID_SERIAL"), "SERIAL-02");
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kQueued);  // held, not failed
  EXPECT_EQ(executor_->currentOf("phone_02"), std::make_pair(std::string("p2"), std::string("p2-q0")));
  EXPECT_EQ(executor_->currentOf("phone_01"), std::nullopt);
  phone_01_ready = true;
  loop_.post([this] { executor_->phoneChanged("phone_01"); });
  ASSERT_TRUE(waitLaunches(2));
  EXPECT_EQ(envValue(launch(1), "ANDROID_SERIAL"), "SERIAL-01");
}

// ---------------------------------------------------------------- 3, 4: failure, timeout

TEST_F(ExecutorTest, NonZeroExitFailsTheItemSkipsTheRestAndThePhoneMovesOn) {
  addProcess("p1", "phone_01", {ItemSpec{}, ItemSpec{}, ItemSpec{}});
  addProcess("p2", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  endLaunch(0, 3);
  ASSERT_TRUE(waitLaunches(2));
  settle();
  ASSERT_EQ(containment_.launched.size(), 2u);
  EXPECT_EQ(itemOf(1), "p2-q0");
  Process p1 = load("p1");
  EXPECT_EQ(p1.status, ProcessStatus::kFailed);
  EXPECT_EQ(p1.items[0].status, ItemStatus::kFailed);
  EXPECT_EQ(p1.items[0].exit_code, 3);
  EXPECT_EQ(p1.items[0].signal, std::nullopt);
  EXPECT_TRUE(p1.items[0].ended_at.has_value());
  EXPECT_EQ(p1.items[1].status, ItemStatus::kSkipped);
  EXPECT_EQ(p1.items[2].status, ItemStatus::kSkipped);
}

TEST_F(ExecutorTest, TimeoutKillsTheTreeAndFailsTheItem) {
  ItemSpec slow;
  slow.timeout_seconds = 60;
  addProcess("p1", "phone_01", {slow, ItemSpec{}});
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  settle();
  loop_.advance(59'999);
  EXPECT_EQ(tree(0).kills, 0) << "killed before timeout_seconds";
  loop_.advance(1);
  EXPECT_EQ(tree(0).kills, 1) << "not killed at timeout_seconds";
  EXPECT_EQ(executor_->stats().timeouts, 1u);
  EXPECT_THAT(resets_.requests, ElementsAre(std::pair<std::string, std::string>("phone_01", "timeout")));
  // The kill took the shim too: no status.json.
  const auto before = executor_->stats().finished;
  endTree(tree(0), execDir(0), std::nullopt);
  ASSERT_TRUE(waitFinished(before + 1));
  Process p1 = load("p1");
  EXPECT_EQ(p1.status, ProcessStatus::kFailed);
  EXPECT_EQ(p1.items[0].status, ItemStatus::kFailed);
  EXPECT_EQ(p1.items[0].exit_code, std::nullopt);
  EXPECT_EQ(p1.items[0].signal, "SIGKILL");
  ASSERT_TRUE(p1.items[0].note.has_value());
  EXPECT_THAT(*p1.items[0].note, HasSubstr("timed out"));
  EXPECT_EQ(p1.items[1].status, ItemStatus::kSkipped);
}

TEST_F(ExecutorTest, ItemEndingBeforeItsTimeoutDisarmsIt) {
  ItemSpec quick;
  quick.timeout_seconds = 5;
  addProcess("p1", "phone_01", {quick});
  addProcess("p2", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  endLaunch(0, 0);
  ASSERT_TRUE(waitLaunches(2));
  loop_.advance(60'000);
  EXPECT_EQ(tree(0).kills, 0);
  EXPECT_EQ(tree(1).kills, 0) << "a stale timeout killed the next item";
  EXPECT_EQ(executor_->stats().timeouts, 0u);
}

// ---------------------------------------------------------------- 5, 6: cancel

TEST_F(ExecutorTest, SoftCancelWritesTheNoticeSignalsTheLeaderAndNeverKills) {
  ItemSpec item;
  item.stop_signal = "SIGINT";
  addProcess("p1", "phone_01", {item, ItemSpec{}});
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  settle();
  auto out = cancelProcess("p1", CancelStrategy::kSoft);
  EXPECT_EQ(out.termination.status, cancel::TerminationStatus::kRequested);
  EXPECT_FALSE(out.termination.terminate_issued);
  EXPECT_EQ(out.termination.error, std::nullopt);
  EXPECT_THAT(tree(0).signals, ElementsAre(SIGINT, SIGCONT));
  EXPECT_EQ(tree(0).kills, 0);
  auto notice = readJsonFile(execDir(0) / kCancelFileName);
  // The work's copy is the same notice, read-only; the agent keeps its own.
  EXPECT_EQ(readJsonFile(workDir(0) / kCancelFileName), notice);
  struct stat st {};
  ASSERT_EQ(::stat((workDir(0) / kCancelFileName).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  ASSERT_EQ(::stat((execDir(0) / kCancelFileName).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(str(notice.at("reason")), "operator asked");
  EXPECT_EQ(str(notice.at("strategy")), "soft");
  EXPECT_EQ(notice.at("requested_by").as_object(), (boost::json::object{{"system", "console"}, {"user", "alice"}}));
  EXPECT_TRUE(notice.contains("requested_at"));
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kCancelling);

  loop_.advance(3'600'000);
  settle();
  EXPECT_EQ(tree(0).kills, 0) << "soft never kills";
  EXPECT_TRUE(resets_.requests.empty());
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kCancelling);

  // The work obeys the notice and exits; the cancel completes.
  const auto before = executor_->stats().finished;
  endTree(tree(0), execDir(0), exited(130));
  ASSERT_TRUE(waitFinished(before + 1));
  Process p1 = load("p1");
  EXPECT_EQ(p1.status, ProcessStatus::kCancelled);
  EXPECT_EQ(p1.items[0].status, ItemStatus::kCancelled);
  EXPECT_EQ(p1.items[0].exit_code, 130);
  EXPECT_EQ(p1.items[1].status, ItemStatus::kCancelled);
}

TEST_F(ExecutorTest, SoftCancelWithStopSignalNoneOnlyWritesTheFile) {
  ItemSpec item;
  item.stop_signal = "none";
  addProcess("p1", "phone_01", {item});
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  auto out = cancelProcess("p1", CancelStrategy::kSoft);
  EXPECT_EQ(out.termination.status, cancel::TerminationStatus::kRequested);
  EXPECT_TRUE(tree(0).signals.empty());
  EXPECT_EQ(tree(0).kills, 0);
  EXPECT_TRUE(std::filesystem::exists(execDir(0) / kCancelFileName));
  EXPECT_EQ(str(readJsonFile(execDir(0) / kCancelFileName).at("reason")), "operator asked");
}

TEST_F(ExecutorTest, HardCancelKillsTheTreeAndTheProcessEndsCancelled) {
  addProcess("p1", "phone_01", {ItemSpec{}, ItemSpec{}});
  addProcess("p2", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  settle();
  auto out = cancelProcess("p1", CancelStrategy::kHard);
  EXPECT_EQ(tree(0).kills, 1);
  EXPECT_TRUE(tree(0).signals.empty()) << "hard sends no stop notice";
  EXPECT_EQ(out.termination.status, cancel::TerminationStatus::kIssued);
  EXPECT_TRUE(out.termination.terminate_issued);
  ASSERT_TRUE(out.termination.container.has_value());
  EXPECT_EQ(str(out.termination.container->at("id")), launch(0).execution_id);
  EXPECT_EQ(str(out.termination.container->at("runtime")), "cgroup");
  EXPECT_EQ(str(out.termination.container->at("leader_pid")), std::to_string(tree(0).info.leader_pid));
  ASSERT_TRUE(out.termination.phone_reset.has_value());
  EXPECT_THAT(resets_.requests, ElementsAre(std::pair<std::string, std::string>("phone_01", "forced_cancel")));
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kCancelling);
  // The kill is also committed as a deadline already due, so an agent that
  // crashes before issuing it kills the tree at its next start.
  auto rows = pendingEscalations();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].queue_item_id, "p1-q0");
  EXPECT_LE(rows[0].force_at, clock_.wallNowMs());
  settle();
  EXPECT_EQ(containment_.launched.size(), 1u) << "the next process started before the tree was gone";

  const auto before = executor_->stats().finished;
  endTree(tree(0), execDir(0), std::nullopt);
  ASSERT_TRUE(waitFinished(before + 1));
  Process p1 = load("p1");
  EXPECT_EQ(p1.status, ProcessStatus::kCancelled);
  EXPECT_EQ(p1.items[0].status, ItemStatus::kCancelled);
  EXPECT_EQ(p1.items[0].signal, "SIGKILL");
  EXPECT_EQ(p1.items[0].exit_code, std::nullopt);
  EXPECT_EQ(p1.items[1].status, ItemStatus::kCancelled);
  ASSERT_TRUE(waitLaunches(2));
  EXPECT_EQ(itemOf(1), "p2-q0");
  EXPECT_TRUE(pendingEscalations().empty()) << "the end of the execution deletes the due kill";
}

TEST_F(ExecutorTest, SoftThenForceStoresTheDeadlineAndKillsAtIt) {
  addProcess("p1", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  settle();
  const WallMs t0 = clock_.wallNowMs();
  const std::int64_t boot0 = clock_.bootNowNs();
  auto out = cancelProcess("p1", CancelStrategy::kSoftThenForce, 30);
  EXPECT_EQ(out.termination.status, cancel::TerminationStatus::kScheduled);
  EXPECT_THAT(tree(0).signals, ElementsAre(SIGTERM, SIGCONT));
  EXPECT_EQ(str(readJsonFile(execDir(0) / kCancelFileName).at("strategy")), "soft_then_force");
  // Stored with the cancel (its completion runs after the commit).
  auto rows = pendingEscalations();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].queue_item_id, "p1-q0");
  EXPECT_EQ(rows[0].process_id, "p1");
  EXPECT_EQ(rows[0].force_at, t0 + 30'000);
  EXPECT_EQ(rows[0].force_at_boot_ns, boot0 + 30'000'000'000);
  EXPECT_EQ(rows[0].boot_id, kBootId);

  loop_.advance(29'900);
  EXPECT_EQ(tree(0).kills, 0) << "escalated before force_at";
  loop_.advance(100);
  EXPECT_EQ(tree(0).kills, 1) << "no escalation at force_at";
  EXPECT_EQ(executor_->stats().escalations_fired, 1u);
  EXPECT_THAT(resets_.requests, ElementsAre(std::pair<std::string, std::string>("phone_01", "forced_cancel")));
  settle();
  EXPECT_TRUE(pendingEscalations().empty()) << "the fired escalation is still pending";

  const auto before = executor_->stats().finished;
  endTree(tree(0), execDir(0), std::nullopt);
  ASSERT_TRUE(waitFinished(before + 1));
  Process p1 = load("p1");
  EXPECT_EQ(p1.status, ProcessStatus::kCancelled);
  EXPECT_EQ(p1.items[0].status, ItemStatus::kCancelled);
  EXPECT_EQ(p1.items[0].signal, "SIGKILL");
}

TEST_F(ExecutorTest, AnEarlierForceAtReArmsTheEscalationEarlier) {
  addProcess("p1", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  const WallMs t0 = clock_.wallNowMs();
  auto first = cancelProcess("p1", CancelStrategy::kSoftThenForce, 30);
  EXPECT_EQ(first.termination.status, cancel::TerminationStatus::kScheduled);
  loop_.advance(10'000);
  EXPECT_EQ(tree(0).kills, 0);
  // t0 + 10 s + 5 s = t0 + 15 s, earlier than t0 + 30 s.
  auto second = cancelProcess("p1", CancelStrategy::kSoftThenForce, 5);
  EXPECT_EQ(second.termination.status, cancel::TerminationStatus::kScheduled);
  auto rows = pendingEscalations();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].force_at, t0 + 15'000);
  loop_.advance(4'900);
  EXPECT_EQ(tree(0).kills, 0) << "escalated before the new force_at";
  loop_.advance(100);
  EXPECT_EQ(tree(0).kills, 1) << "the earlier force_at did not re-arm the escalation";
  // The original deadline does not fire a second kill.
  loop_.advance(20'000);
  EXPECT_EQ(tree(0).kills, 1);
  EXPECT_EQ(executor_->stats().escalations_fired, 1u);
}

TEST_F(ExecutorTest, ALaterForceAtDoesNotPostponeTheEscalation) {
  addProcess("p1", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  (void)cancelProcess("p1", CancelStrategy::kSoftThenForce, 10);
  loop_.advance(5'000);
  (void)cancelProcess("p1", CancelStrategy::kSoftThenForce, 60);
  loop_.advance(4'999);
  EXPECT_EQ(tree(0).kills, 0);
  loop_.advance(1);
  EXPECT_EQ(tree(0).kills, 1) << "a softer request moved the deadline";
}

TEST_F(ExecutorTest, CancellingAQueuedProcessStartsThePhonesNextProcess) {
  startExecutor();
  // Submitted without a phoneChanged() (the executor has not looked yet): the
  // head process is queued, the next one waits behind it.
  addProcess("p1", "phone_01", {ItemSpec{}, ItemSpec{}});
  addProcess("p2", "phone_01");
  auto out = cancelProcess("p1", CancelStrategy::kHard);
  EXPECT_EQ(out.termination.status, cancel::TerminationStatus::kNotNeeded);
  EXPECT_FALSE(out.termination.terminate_issued);
  ASSERT_TRUE(waitLaunches(1)) << "processChanged did not start the phone's next process";
  settle();
  ASSERT_EQ(containment_.launched.size(), 1u);
  EXPECT_EQ(itemOf(0), "p2-q0");
  Process p1 = load("p1");
  EXPECT_EQ(p1.status, ProcessStatus::kCancelled);
  EXPECT_EQ(p1.items[0].status, ItemStatus::kCancelled);
  EXPECT_EQ(p1.items[1].status, ItemStatus::kCancelled);
  EXPECT_TRUE(resets_.requests.empty());
}

TEST_F(ExecutorTest, CancellingAQueuedProcessBehindRunningWorkSkipsItLater) {
  addProcess("p0", "phone_01");
  addProcess("p1", "phone_01");
  addProcess("p2", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  (void)cancelProcess("p1", CancelStrategy::kSoftThenForce);
  settle();
  EXPECT_EQ(containment_.launched.size(), 1u) << "a cancel started work on a busy phone";
  EXPECT_EQ(tree(0).kills, 0);
  EXPECT_TRUE(tree(0).signals.empty()) << "another process's work got the stop notice";
  endLaunch(0, 0);
  ASSERT_TRUE(waitLaunches(2));
  EXPECT_EQ(itemOf(1), "p2-q0");
  EXPECT_EQ(statusOf("p0"), ProcessStatus::kSucceeded);
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kCancelled);
}

TEST_F(ExecutorTest, LegacyItemCancelEndsThatItemAndTheProcessGoesOn) {
  addProcess("p1", "phone_01", {ItemSpec{}, ItemSpec{}});
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  cancel::CancelInput in;
  in.reason = "legacy";
  in.requested_by = {{"system", "old-scheduler"}};
  std::optional<Result<cancel::CancelOutcome>> out;
  cancels_->cancelQueueItem("p1-q0", in, [&out](Result<cancel::CancelOutcome> r) { out.emplace(std::move(r)); });
  ASSERT_TRUE(loop_.runUntil([&] { return out.has_value(); }));
  ASSERT_TRUE(out->ok());
  EXPECT_EQ((*out)->termination.status, cancel::TerminationStatus::kScheduled);
  EXPECT_THAT(tree(0).signals, ElementsAre(SIGTERM, SIGCONT));
  loop_.advance(10'000);
  EXPECT_EQ(tree(0).kills, 1) << "the legacy cancel forces after 10 s";
  endTree(tree(0), execDir(0), std::nullopt);
  ASSERT_TRUE(waitLaunches(2)) << "the process's next item did not run";
  EXPECT_EQ(itemOf(1), "p1-q1");
  Process p1 = load("p1");
  EXPECT_EQ(p1.status, ProcessStatus::kRunning);
  EXPECT_EQ(p1.items[0].status, ItemStatus::kCancelled);
  EXPECT_EQ(p1.items[0].signal, "SIGKILL");
}

// ---------------------------------------------------------------- 7: recovery

class ExecutorRecoveryTest : public ExecutorTest {
 protected:
  // A cancelling p1 whose escalation row is already due: how many kills its
  // still-live tree gets once the executor starts.
  int killsAtStartWithDueEscalation(const CancelRecord& cancel, const store::EscalationRow& row) {
    seedExecuting("p1", "exec-1", ProcessStatus::kCancelling, cancel, row);
    auto live = std::make_shared<ContainerState>();
    containment_.adoptable["exec-1"] = live;
    startExecutor();
    settle();
    return live->kills;
  }

  // What a crashed agent leaves: the process running (or cancelling), its
  // first item executing, the execution row open, the exec dir on disk.
  void seedExecuting(const std::string& process_id, const std::string& execution_id,
                     ProcessStatus status = ProcessStatus::kRunning, std::optional<CancelRecord> cancel = std::nullopt,
                     std::optional<store::EscalationRow> escalation = std::nullopt) {
    Process p = makeProcess(process_id, "phone_01", {ItemSpec{}, ItemSpec{}});
    const WallMs started = clock_.wallNowMs() - 1'000;
    query<Unit>([p, started, execution_id, status, cancel, escalation](store::Db& db) mutable {
      store::ProcessRepository procs(db);
      procs.insertProcess(p);
      p.status = status;
      p.cancel = cancel;
      p.updated_at = started;
      p.items[0].status = ItemStatus::kExecuting;
      p.items[0].started_at = started;
      if (status == ProcessStatus::kCancelling) {
        p.items[1].status = ItemStatus::kCancelled;
        p.items[1].ended_at = started;
        procs.updateItemState(p.items[1]);
      }
      procs.updateItemState(p.items[0]);
      procs.updateProcessState(p);
      store::ExecutionRepository execs(db);
      execs.insertExecution(store::ExecutionRow{execution_id, p.items[0].queue_item_id, "", "cgroup",
                                                "/sys/fs/cgroup/test/" + execution_id, 999, 12'345, kBootId, started,
                                                std::nullopt, std::nullopt});
      if (escalation) execs.upsertEscalation(*escalation);
      return Unit{};
    });
    std::filesystem::create_directories(execDir(execution_id));
  }
  std::filesystem::path execDir(const std::string& execution_id) {
    return options_.state_dir / "executions" / execution_id;
  }
  using ExecutorTest::execDir;
};

TEST_F(ExecutorRecoveryTest, GoneTreeWithAStatusFileEndsWithItsExitCode) {
  seedExecuting("p1", "exec-1");
  addProcess("p2", "phone_01");
  ASSERT_TRUE(writeExecStatus(execDir("exec-1"), exited(7)).ok());
  startExecutor();
  ASSERT_TRUE(waitFinished(1));
  ASSERT_EQ(containment_.adopted.size(), 1u);
  const auto& adopted = containment_.adopted[0];
  EXPECT_EQ(adopted.info.id, "exec-1");
  EXPECT_EQ(adopted.info.runtime, "cgroup");
  EXPECT_EQ(adopted.info.cgroup, "/sys/fs/cgroup/test/exec-1");
  EXPECT_EQ(adopted.info.leader_pid, 999);
  EXPECT_EQ(adopted.info.leader_start_time, 12'345);
  EXPECT_EQ(adopted.marker, "PHONEFARM_EXECUTION_ID=exec-1");
  Process p1 = load("p1");
  EXPECT_EQ(p1.items[0].status, ItemStatus::kFailed);
  EXPECT_EQ(p1.items[0].exit_code, 7);
  EXPECT_EQ(p1.items[1].status, ItemStatus::kSkipped);
  EXPECT_EQ(p1.status, ProcessStatus::kFailed);
  for (const auto& row : openExecutions())
    EXPECT_NE(row.execution_id, "exec-1") << "the adopted execution is still open";
  // Only then the phone's next process.
  ASSERT_TRUE(waitLaunches(1));
  settle();
  ASSERT_EQ(containment_.launched.size(), 1u);
  EXPECT_EQ(itemOf(0), "p2-q0");
}

TEST_F(ExecutorRecoveryTest, GoneTreeWithoutAStatusFileIsLost) {
  seedExecuting("p1", "exec-1");
  startExecutor();
  ASSERT_TRUE(waitFinished(1));
  Process p1 = load("p1");
  EXPECT_EQ(p1.items[0].status, ItemStatus::kFailed);
  EXPECT_EQ(p1.items[0].exit_code, std::nullopt);
  EXPECT_EQ(p1.items[0].signal, std::nullopt);
  ASSERT_TRUE(p1.items[0].note.has_value());
  EXPECT_THAT(*p1.items[0].note, StartsWith("lost"));
  EXPECT_EQ(p1.status, ProcessStatus::kFailed);
  EXPECT_EQ(executor_->stats().lost, 1u);
}

TEST_F(ExecutorRecoveryTest, LiveTreeIsWatchedAgainAndItsStoredEscalationFiresAtTheOriginalDeadline) {
  // The wall clock has jumped since the cancel: on the wall clock force_at is
  // 60 s away, on the boot clock (same boot) 5 s; the boot clock wins.
  const WallMs now = clock_.wallNowMs();
  CancelRecord cancel{"operator asked", CancelStrategy::kSoftThenForce, now - 5'000, now + 60'000, {}};
  store::EscalationRow row{"p1-q0", "p1", now + 60'000, clock_.bootNowNs() + 5'000'000'000, kBootId, now - 5'000, {}};
  seedExecuting("p1", "exec-1", ProcessStatus::kCancelling, cancel, row);
  auto live = std::make_shared<ContainerState>();
  live->pids = {999};
  containment_.adoptable["exec-1"] = live;
  startExecutor();
  settle();
  EXPECT_EQ(executor_->stats().adopted, 1u);
  EXPECT_EQ(executor_->stats().finished, 0u);
  EXPECT_TRUE(loop_.watching(live->fd));
  EXPECT_THAT(executor_->executingProcessIds(), ElementsAre("p1"));
  loop_.advance(4'900);
  EXPECT_EQ(live->kills, 0) << "escalated before the stored deadline";
  loop_.advance(100);
  EXPECT_EQ(live->kills, 1) << "the stored deadline was not re-armed";
  live->pids.clear();
  endTree(*live, execDir("exec-1"), std::nullopt);
  ASSERT_TRUE(waitFinished(1));
  Process p1 = load("p1");
  EXPECT_EQ(p1.items[0].status, ItemStatus::kCancelled);
  EXPECT_EQ(p1.items[0].signal, "SIGKILL");
  EXPECT_EQ(p1.status, ProcessStatus::kCancelled);
  EXPECT_TRUE(live->removed);
}

TEST_F(ExecutorRecoveryTest, PastEscalationFiresAtOnce) {
  const WallMs now = clock_.wallNowMs();
  CancelRecord cancel{"operator asked", CancelStrategy::kSoftThenForce, now - 20'000, now - 10'000, {}};
  store::EscalationRow row{"p1-q0", "p1", now - 10'000, clock_.bootNowNs() - 10'000'000'000, kBootId, now - 20'000, {}};
  EXPECT_EQ(killsAtStartWithDueEscalation(cancel, row), 1);
}

TEST_F(ExecutorRecoveryTest, HardCancelCommittedBeforeACrashKillsTheTreeAtStart) {
  // What a hard cancel commits (its kill as a deadline due at once) when the
  // agent died before the kill went out.
  const WallMs now = clock_.wallNowMs();
  CancelRecord cancel{"operator asked", CancelStrategy::kHard, now - 1'000, std::nullopt, {}};
  store::EscalationRow row{"p1-q0", "p1", now - 1'000, clock_.bootNowNs() - 1'000'000'000, kBootId, now - 1'000, {}};
  EXPECT_EQ(killsAtStartWithDueEscalation(cancel, row), 1);
}

TEST_F(ExecutorRecoveryTest, CancellingProcessWithNothingExecutingBecomesCancelled) {
  Process p = makeProcess("p1", "phone_01", {ItemSpec{}, ItemSpec{}});
  const WallMs now = clock_.wallNowMs();
  query<Unit>([p, now](store::Db& db) mutable {
    store::ProcessRepository procs(db);
    procs.insertProcess(p);
    p.status = ProcessStatus::kCancelling;
    p.cancel = CancelRecord{"operator asked", CancelStrategy::kHard, now - 1'000, std::nullopt, {}};
    for (auto& item : p.items) {
      item.status = ItemStatus::kCancelled;
      item.ended_at = now - 500;
      procs.updateItemState(item);
    }
    procs.updateProcessState(p);
    return Unit{};
  });
  addProcess("p2", "phone_01");
  startExecutor();
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kCancelled);
  // It no longer blocks its phone.
  ASSERT_TRUE(waitLaunches(1));
  EXPECT_EQ(itemOf(0), "p2-q0");
}

// ---------------------------------------------------------------- 8, 9, 10

TEST_F(ExecutorTest, TreeStillAliveAfterTheKillIsReportedStuck) {
  options_.stuck_after = 500ms;
  addProcess("p1", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  (void)cancelProcess("p1", CancelStrategy::kHard);
  ASSERT_EQ(tree(0).kills, 1);
  tree(0).pids = {4242};
  loop_.advance(499);
  EXPECT_EQ(executor_->stats().stuck, 0u);
  loop_.advance(1);
  EXPECT_EQ(executor_->stats().stuck, 1u);
  EXPECT_GE(tree(0).kills, 2) << "a stuck tree is killed again";
  settle();
  {
    Process p1 = load("p1");
    EXPECT_EQ(p1.items[0].status, ItemStatus::kExecuting);
    ASSERT_TRUE(p1.items[0].note.has_value()) << "no stuck note stored";
    EXPECT_THAT(*p1.items[0].note, HasSubstr("stuck"));
    EXPECT_THAT(*p1.items[0].note, HasSubstr("4242"));
  }
  EXPECT_TRUE(loop_.watching(tree(0).fd)) << "a stuck tree is still watched";
  loop_.advance(500);
  EXPECT_EQ(executor_->stats().stuck, 1u) << "reported once";

  tree(0).pids.clear();
  endTree(tree(0), execDir(0), std::nullopt);
  ASSERT_TRUE(waitFinished(1));
  Process p1 = load("p1");
  EXPECT_EQ(p1.status, ProcessStatus::kCancelled);
  EXPECT_EQ(p1.items[0].status, ItemStatus::kCancelled);
  ASSERT_TRUE(p1.items[0].note.has_value());
  EXPECT_THAT(*p1.items[0].note, HasSubstr("4242"));
}

TEST_F(ExecutorTest, LaunchFailureFailsTheItemAndThePhoneMovesOn) {
  containment_.fail_launches = 1;
  addProcess("p1", "phone_01", {ItemSpec{}, ItemSpec{}});
  addProcess("p2", "phone_01");
  startExecutor();
  ASSERT_TRUE(waitLaunches(1));
  settle();
  EXPECT_EQ(containment_.launch_attempts, 2);
  ASSERT_EQ(containment_.launched.size(), 1u);
  EXPECT_EQ(itemOf(0), "p2-q0");
  Process p1 = load("p1");
  EXPECT_EQ(p1.status, ProcessStatus::kFailed);
  EXPECT_EQ(p1.items[0].status, ItemStatus::kFailed);
  ASSERT_TRUE(p1.items[0].note.has_value());
  EXPECT_THAT(*p1.items[0].note, StartsWith("failed to start"));
  EXPECT_THAT(*p1.items[0].note, HasSubstr("clone3"));
  EXPECT_EQ(p1.items[1].status, ItemStatus::kSkipped);
  EXPECT_EQ(executor_->stats().start_failures, 1u);
  EXPECT_EQ(openExecutions().size(), 1u) << "only the second process's execution is open";
}

TEST_F(ExecutorTest, MissingRunAsUserMakesTheExecutorUnavailable) {
  options_.run_as = "phonefarm-no-such-user";
  addProcess("p1", "phone_01");
  addProcess("p2", "phone_02");
  startExecutor();
  ASSERT_TRUE(executor_->unavailable().has_value());
  EXPECT_THAT(*executor_->unavailable(), HasSubstr("phonefarm-no-such-user"));
  EXPECT_EQ(str(executor_->describe().at("can_run_work")), "false");
  executor_->phoneChanged("phone_01");
  settle();
  EXPECT_EQ(containment_.launch_attempts, 0);
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kQueued);
  EXPECT_EQ(statusOf("p2"), ProcessStatus::kQueued);
}

TEST_F(ExecutorTest, RootRunAsIsRefused) {
  options_.run_as = "root";
  addProcess("p1", "phone_01");
  startExecutor();
  ASSERT_TRUE(executor_->unavailable().has_value());
  EXPECT_THAT(*executor_->unavailable(), HasSubstr("root"));
  settle();
  EXPECT_EQ(containment_.launch_attempts, 0);
  EXPECT_EQ(statusOf("p1"), ProcessStatus::kQueued);
}

}  // namespace
}  // namespace phonefarm::exec
