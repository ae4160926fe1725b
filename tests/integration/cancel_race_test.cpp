// A cancel that races the start of its item: the scheduler changes its mind
// a few milliseconds after submitting. Whatever the offset, the stop notice
// must never kill the exec shim (it is blocked from before the shim's first
// instruction and forwarded once the command exists), so every run ends with
// a truthful outcome (an exit code or the signal the command died of, never
// "lost") and its stdout.log. Runs per strategy: PHONEFARM_CANCEL_RACE_RUNS
// (default 60 in CI; a few hundred for the full size).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "tests/integration/work_fixture.hpp"

namespace phonefarm::testing {
namespace {

using namespace std::chrono_literals;

int runsPerStrategy() {
  const char* env = std::getenv("PHONEFARM_CANCEL_RACE_RUNS");
  return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : 60;
}

struct RaceTally {
  int runs = 0;
  int started = 0;  // the command ran (an exit code or a signal)
  int never_started = 0;
  std::vector<std::string> bad;  // descriptions of untruthful outcomes
};

class CancelRaceTest : public WorkFixture {
 protected:
  // One worker per phone, each with its own connection, so the two phones'
  // races overlap and the test takes half the time.
  RaceTally race(const std::string& strategy, const std::string& job) {
    const int runs = runsPerStrategy();
    RaceTally total;
    std::mutex mutex;
    auto worker = [&](const std::string& phone, int count, unsigned seed) {
      HttpClient client("127.0.0.1", port_);
      std::mt19937 rng(seed);
      std::uniform_int_distribution<int> offset_us(0, 50'000);
      for (int i = 0; i < count; ++i) {
        const std::string id = "race-" + strategy + "-" + phone + "-" + std::to_string(i);
        boost::json::object body{
            {"process_id", id},
            {"phone_id", phone},
            {"account_id", "a"},
            {"queue_items",
             boost::json::array{boost::json::object{
                 {"queue_item_id", id + "-q0"}, {"command", boost::json::array{job}}, {"stop_signal", "SIGTERM"}}}}};
        auto submitted = client.post("/processes", boost::json::serialize(body),
                                     {{"Authorization", std::string("Bearer ") + kScheduleToken}});
        ASSERT_EQ(submitted.status, 201) << submitted.body;
        // The offset is the point of the test: the cancel lands somewhere in
        // the item's start (claim, launch, shim set-up, command exec).
        std::this_thread::sleep_for(std::chrono::microseconds(offset_us(rng)));
        const std::string cancel_body =
            strategy == "legacy"
                ? R"({"queue_item_id":")" + id + R"(-q0","reason":"race","requested_by":{"system":"test"}})"
                : R"({"reason":"race","strategy":")" + strategy +
                      R"(","force_after_seconds":30,"requested_by":{"system":"test"}})";
        auto cancelled = client.post(strategy == "legacy" ? "/cancel" : "/processes/" + id + "/cancel", cancel_body,
                                     {{"Authorization", std::string("Bearer ") + kOperateToken}});
        ASSERT_EQ(cancelled.status, 200) << cancelled.body;
        // Wait for the item to settle.
        boost::json::object item;
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        for (;;) {
          auto p = client.get("/processes/" + id, {{"Authorization", std::string("Bearer ") + kReadToken}});
          ASSERT_EQ(p.status, 200) << p.body;
          item = p.json().at("queue_items").at(0).as_object();
          const auto& st = item.at("status");
          if (st != "pending" && st != "executing") break;
          ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "item never settled: " << p.body;
          std::this_thread::sleep_for(5ms);
        }
        std::lock_guard lock(mutex);
        ++total.runs;
        const bool has_outcome = !item.at("exit_code").is_null() || !item.at("signal").is_null();
        const bool lost = item.at("note").is_string() &&
                          std::string_view(item.at("note").as_string()).find("lost") != std::string_view::npos;
        if (has_outcome) {
          ++total.started;
        } else if (item.at("started_at").is_null()) {
          ++total.never_started;  // cancelled while pending: never launched
        }
        if (lost || (!has_outcome && !item.at("started_at").is_null())) {
          total.bad.push_back(id + ": " + boost::json::serialize(item));
        }
      }
    };
    std::thread a(worker, "phone_01", runs / 2, 1u);
    std::thread b(worker, "phone_02", runs - runs / 2, 2u);
    a.join();
    b.join();
    return total;
  }

  // Every execution directory the agent made holds the run's stdout.log.
  void expectEveryExecutionHasItsStdout() {
    int executions = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path() / "state" / "executions")) {
      if (!entry.is_directory()) continue;
      ++executions;
      EXPECT_TRUE(std::filesystem::exists(entry.path() / "stdout.log")) << entry.path();
    }
    EXPECT_GT(executions, 0);
  }

  void report(const std::string& strategy, const RaceTally& t) {
    std::printf("cancel race %-15s runs %d, command ran %d, cancelled before start %d, untruthful %zu\n",
                strategy.c_str(), t.runs, t.started, t.never_started, t.bad.size());
    EXPECT_EQ(t.runs, runsPerStrategy());
    EXPECT_TRUE(t.bad.empty()) << t.bad.size() << " runs lost their outcome, e.g. " << t.bad.front();
    // The race is real only if runs reached the command.
    EXPECT_GT(t.started, 0);
  }

  // One strategy's race on a job that prints a line, reported and checked.
  void raceAndCheck(const std::string& strategy) {
    const std::string job = writeJob("hello.sh", "#!/bin/sh\necho hello\n");
    report(strategy, race(strategy, job));
    expectEveryExecutionHasItsStdout();
  }
};

TEST_F(CancelRaceTest, SoftCancelRightAfterSubmitNeverLosesTheRun) { raceAndCheck("soft"); }

TEST_F(CancelRaceTest, SoftThenForceRightAfterSubmitNeverLosesTheRun) { raceAndCheck("soft_then_force"); }

TEST_F(CancelRaceTest, LegacyCancelRightAfterSubmitNeverLosesTheRun) { raceAndCheck("legacy"); }

TEST_F(CancelRaceTest, EveryCancelReplyWhileExecutingNamesTheContainer) {
  const std::string job = stubbornJob();  // handles SIGTERM and keeps running
  submitWork("busy-1", {{job, (outDir() / "busy").string()}});
  waitForFile(outDir() / "busy.pid");  // its TERM trap is set
  auto check = [](const HttpClient::Response& r) {
    ASSERT_EQ(r.status, 200) << r.body;
    const auto body = r.json();
    EXPECT_TRUE(body.at("termination").at("container").is_object()) << r.body;
  };
  // Repeated cancels change nothing (no termination action), yet each names it.
  for (int i = 0; i < 3; ++i) check(call("POST", "/processes/busy-1/cancel", cancelBody("soft"), kOperateToken));
  std::vector<std::thread> threads;
  std::vector<HttpClient::Response> replies(10);
  for (std::size_t i = 0; i < replies.size(); ++i) {
    threads.emplace_back([&, i] {
      HttpClient client("127.0.0.1", port_);
      replies[i] = client.post("/processes/busy-1/cancel", cancelBody("soft_then_force", 30),
                               {{"Authorization", std::string("Bearer ") + kOperateToken}});
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : replies) check(r);
  check(call("POST", "/processes/busy-1/cancel", cancelBody("hard"), kOperateToken));
  waitForStatus("busy-1", "cancelled");
}

}  // namespace
}  // namespace phonefarm::testing
