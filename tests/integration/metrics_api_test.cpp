// GET /metrics on the real agent: the daemon's scrape-time metrics (executor,
// store, phones, resets, connections) next to the request and cancel counters.
#include "tests/integration/agent_fixture.hpp"

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
       }) {
    EXPECT_NE(r.body.find(std::string(line) + "\n"), std::string::npos) << line;
  }
  EXPECT_NE(r.body.find("# TYPE phonefarm_store_commits_total counter\nphonefarm_store_commits_total "),
            std::string::npos);
  EXPECT_EQ(r.body.find("p-1"), std::string::npos) << "no ids in labels";
}

}  // namespace
}  // namespace phonefarm::testing
