// GET /metrics on the real agent: the daemon's scrape-time metrics (executor,
// store, phones, resets, connections) next to the request and cancel counters.
#include <unistd.h>

#include "tests/integration/agent_fixture.hpp"
#include "tests/support/run_command.hpp"

namespace phonefarm::testing {
namespace {

class MetricsApi : public AgentFixture {};

TEST_F(MetricsApi, ExposesRequestsCancelsAndTheDaemonsState) {
  EXPECT_EQ(call("GET", "/metrics", "", nullptr).status, 401);
  submit("p-1", 2);
  ASSERT_EQ(call("POST", "/processes/p-1/cancel", cancelBody("hard", 0), kOperateToken).status, 200);

  auto r = call("GET", "/metrics", "", kReadToken);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  for (const char* line : {
           R"(phonefarm_http_requests_total{route="/processes",method="POST",status="201"} 1)",
           R"(phonefarm_http_requests_total{route="/processes/{process_id}/cancel",method="POST",status="200"} 1)",
           R"(phonefarm_http_requests_total{route="/metrics",method="GET",status="401"} 1)",
           R"(phonefarm_cancels_total{strategy="hard",outcome="cancel_requested"} 1)",
           "# TYPE phonefarm_executor_started_total counter",
           "phonefarm_executor_executing_items 0",
           R"(phonefarm_phones_by_adb_state{adb_state="absent"} 2)",
           R"(phonefarm_phones_by_health{health="ready"} 2)",
           R"(phonefarm_phones_by_health{health="busy"} 0)",
           "phonefarm_adb_server_up 0",
           "phonefarm_resets_started_total 0",
           "phonefarm_http_active_connections 1",
           "phonefarm_executor_escalations_pending 0",
           "# TYPE phonefarm_adb_server_starts_total counter",
           "# TYPE phonefarm_store_batch_jobs histogram",
           "# TYPE phonefarm_store_commit_seconds histogram",
       }) {
    EXPECT_NE(r.body.find(std::string(line) + "\n"), std::string::npos) << line;
  }
  EXPECT_NE(r.body.find("# TYPE phonefarm_store_commits_total counter\nphonefarm_store_commits_total "),
            std::string::npos);
  EXPECT_EQ(r.body.find("p-1"), std::string::npos) << "no ids in labels";
  // Every commit so far (the submit, the cancel) is in the batch and COMMIT histograms.
  EXPECT_NE(r.body.find("phonefarm_store_commit_seconds_count "), std::string::npos);
  EXPECT_EQ(r.body.find("phonefarm_store_commit_seconds_count 0\n"), std::string::npos);
}

// [http] metrics_require_token = false: Prometheus scrapes without a token;
// everything else still needs one.
class MetricsWithoutToken : public AgentFixture {
 protected:
  std::string extraConfig() const override { return "[http]\nmetrics_require_token = false\n"; }
};

TEST_F(MetricsWithoutToken, MetricsAnswerWithoutATokenAndNothingElseDoes) {
  const auto r = call("GET", "/metrics", "", nullptr);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("phonefarm_executor_executing_items 0\n"), std::string::npos) << r.body;
  EXPECT_EQ(call("GET", "/readyz", "", nullptr).status, 401);
  EXPECT_EQ(call("GET", "/processes", "", nullptr).status, 401);
}

// The promtool that scripts/setup provides (Debian's, or the one it extracted
// from Debian's prometheus package into build/tools).
std::string promtool() {
  for (const std::string candidate : {"/usr/bin/promtool", PHONEFARM_SOURCE_DIR "/build/tools/promtool"}) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

TEST_F(MetricsApi, PromtoolAcceptsTheExposition) {
  const std::string tool = promtool();
  ASSERT_FALSE(tool.empty()) << "promtool not found: run scripts/setup";
  // Some traffic first, so that labelled families and histograms have samples.
  submit("p-1", 2);
  ASSERT_EQ(call("POST", "/processes/p-1/cancel", cancelBody("soft", 0), kOperateToken).status, 200);
  ASSERT_EQ(call("GET", "/processes/nope", "", kReadToken).status, 404);

  auto r = call("GET", "/metrics", "", kReadToken);
  ASSERT_EQ(r.status, 200);
  ASSERT_NE(r.body.find("phonefarm_http_request_duration_seconds_bucket"), std::string::npos) << r.body;
  const auto check = runCommand({tool, "check", "metrics"}, r.body);
  EXPECT_FALSE(check.timed_out);
  // promtool exits 3 for lint findings (e.g. a counter not ending in _total)
  // and 1 for a parse error; it prints nothing when all is well.
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(check.output, "");

  // The test can fail: promtool rejects a broken exposition.
  const auto broken = runCommand({tool, "check", "metrics"}, "# TYPE phonefarm_x counter\nphonefarm_x{a=\"b} 1\n");
  EXPECT_NE(broken.exit_code, 0) << broken.output;
}

}  // namespace
}  // namespace phonefarm::testing
