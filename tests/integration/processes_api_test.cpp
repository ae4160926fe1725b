// The real agent over HTTP: health, auth and scopes, submit/get/list, the
// error status codes and bodies of docs/api.md.
#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;

class ProcessesApi : public AgentFixture {};

TEST_F(ProcessesApi, HealthzNeedsNoTokenReadyzDoes) {
  auto h = call("GET", "/healthz", "", nullptr);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.json(), json::parse(R"({"status":"ok"})"));
  EXPECT_EQ(h.headers["content-type"], "application/json; charset=utf-8");
  auto unauth = call("GET", "/readyz", "", nullptr);
  EXPECT_EQ(unauth.status, 401);
  EXPECT_EQ(unauth.headers["www-authenticate"], "Bearer");
  EXPECT_EQ(unauth.json(), json::parse(R"({"detail":"Not authenticated"})"));
  auto ready = call("GET", "/readyz", "", kReadToken);
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.json().at("status"), "ready");
}

TEST_F(ProcessesApi, BadTokensAre401) {
  for (const char* auth : {"Bearer nope-not-a-token-at-all", "Basic abc", "Bearer", "bearer  "}) {
    auto r = client_->request("GET", "/processes", "", {{"Authorization", auth}});
    EXPECT_EQ(r.status, 401) << auth;
    EXPECT_EQ(r.json(), json::parse(R"({"detail":"Not authenticated"})"));
  }
  // The scheme is case-insensitive.
  EXPECT_EQ(client_->request("GET", "/processes", "", {{"Authorization", std::string("bearer ") + kReadToken}}).status,
            200);
}

TEST_F(ProcessesApi, ScopesAreEnforced) {
  submit("scoped");
  const std::string submit_body =
      R"({"phone_id":"phone_01","account_id":"a","queue_items":[{"command":["/usr/bin/true"]}]})";
  auto read_submit = call("POST", "/processes", submit_body, kReadToken);
  EXPECT_EQ(read_submit.status, 403);
  EXPECT_EQ(read_submit.json(), json::parse(R"({"detail":"Forbidden"})"));
  EXPECT_EQ(call("POST", "/processes", submit_body, kOperateToken).status, 403);
  EXPECT_EQ(call("POST", "/processes/scoped/cancel", cancelBody(), kReadToken).status, 403);
  EXPECT_EQ(call("POST", "/cancel", R"({"queue_item_id":"x","reason":"r","requested_by":{}})", kReadToken).status, 403);
  EXPECT_EQ(call("GET", "/processes/scoped", "", kReadToken).status, 200);
  EXPECT_EQ(call("POST", "/processes/scoped/cancel", cancelBody(), kOperateToken).status, 200);
  EXPECT_EQ(call("POST", "/processes", submit_body, kScheduleToken).status, 201);
}

TEST_F(ProcessesApi, SubmitReturnsTheStoredProcess) {
  auto r = call("POST", "/processes",
                R"({"process_id":"p-1","phone_id":"phone_01","account_id":"account_user095916355",
                    "requested_by":{"system":"scheduler","user":null,"metadata":{}},"future_field":true,
                    "queue_items":[{"queue_item_id":"q-1","command":["/usr/bin/env","--x"],"env":{"K":"V"},
                                    "timeout_seconds":600,"stop_signal":"SIGTERM"},{"command":["/bin/true"]}]})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.headers["location"], "/processes/p-1");
  auto p = r.json().as_object();
  EXPECT_EQ(p.at("process_id"), "p-1");
  EXPECT_EQ(p.at("status"), "queued");
  EXPECT_EQ(p.at("phone_id"), "phone_01");
  EXPECT_EQ(p.at("account_id"), "account_user095916355");
  EXPECT_EQ(p.at("capability_request_id"), "p-1");
  EXPECT_EQ(p.at("requested_by"), json::parse(R"({"system":"scheduler","user":null,"metadata":{}})"));
  EXPECT_TRUE(p.at("cancel").is_null());
  const auto& items = p.at("queue_items").as_array();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].at("queue_item_id"), "q-1");
  EXPECT_EQ(items[0].at("position"), 0);
  EXPECT_EQ(items[0].at("status"), "pending");
  EXPECT_EQ(items[0].at("command"), json::parse(R"(["/usr/bin/env","--x"])"));
  EXPECT_TRUE(items[0].at("started_at").is_null());
  EXPECT_TRUE(items[0].at("exit_code").is_null());
  EXPECT_EQ(items[1].at("position"), 1);
  EXPECT_EQ(items[1].at("queue_item_id").as_string().size(), 36u);  // generated UUIDv4
  const std::string created(p.at("created_at").as_string());
  EXPECT_EQ(created.size(), 24u);  // 2026-11-28T10:26:51.123Z
  EXPECT_EQ(created.back(), 'Z');

  auto get = call("GET", "/processes/p-1", "", kReadToken);
  ASSERT_EQ(get.status, 200);
  auto stored = get.json().as_object();
  EXPECT_EQ(stored.at("queue_items"), p.at("queue_items"));
  EXPECT_EQ(stored.at("cancel_audit"), json::array{});
}

TEST_F(ProcessesApi, GeneratedIdsAndConflicts) {
  auto r = call("POST", "/processes",
                R"({"phone_id":"phone_01","account_id":"a","queue_items":[{"command":["/usr/bin/true"]}]})");
  ASSERT_EQ(r.status, 201);
  const std::string id(r.json().at("process_id").as_string());
  EXPECT_EQ(id.size(), 36u);
  EXPECT_EQ(id[14], '4');  // UUID version 4
  EXPECT_EQ(r.json().at("capability_request_id").as_string(), id);

  submit("dup", 1);
  auto again = call(
      "POST", "/processes",
      R"({"process_id":"dup","phone_id":"phone_01","account_id":"a","queue_items":[{"command":["/usr/bin/true"]}]})");
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.json(), json::parse(R"({"detail":"Process already exists"})"));
  auto item_dup = call("POST", "/processes",
                       R"({"process_id":"other","phone_id":"phone_01","account_id":"a",
                           "queue_items":[{"queue_item_id":"dup-q0","command":["/usr/bin/true"]}]})");
  EXPECT_EQ(item_dup.status, 409);
  EXPECT_EQ(call("GET", "/processes/other").status, 404);  // nothing half-written
}

TEST_F(ProcessesApi, ValidationErrorsListEveryProblem) {
  auto r = call("POST", "/processes",
                R"({"phone_id":"phone_99","account_id":"","queue_items":[{"command":["relative"]},{}]})");
  ASSERT_EQ(r.status, 422);
  const auto body = r.json();
  const auto& detail = body.at("detail").as_array();
  std::vector<std::string> locs;
  for (const auto& d : detail) {
    locs.push_back(json::serialize(d.at("loc")));
    EXPECT_TRUE(d.at("msg").is_string());
    EXPECT_TRUE(d.at("type").is_string());
  }
  EXPECT_EQ(locs, (std::vector<std::string>{R"(["body","phone_id"])", R"(["body","account_id"])",
                                            R"(["body","queue_items",0,"command",0])",
                                            R"(["body","queue_items",1,"command"])"}));
  auto malformed = call("POST", "/processes", "{not json");
  EXPECT_EQ(malformed.status, 422);
  EXPECT_EQ(malformed.json().at("detail").at(0).at("type"), "json_invalid");
  EXPECT_EQ(malformed.json().at("detail").at(0).at("loc"), json::parse(R"(["body"])"));
  auto not_object = call("POST", "/processes", "[]");
  EXPECT_EQ(not_object.status, 422);
  EXPECT_EQ(call("GET", "/processes", "", kReadToken).json().at("processes"), json::array{});
}

TEST_F(ProcessesApi, RoutingErrors) {
  auto unknown = call("GET", "/nope");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.json(), json::parse(R"({"detail":"Not found"})"));
  EXPECT_EQ(call("GET", "/processes/unknown-id").json(), json::parse(R"({"detail":"Process not found"})"));
  EXPECT_EQ(call("GET", "/processes/unknown-id").status, 404);
  auto wrong = call("DELETE", "/processes");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.headers["allow"], "GET, HEAD, POST");
  EXPECT_EQ(call("GET", "/processes/x/cancel").status, 405);
  EXPECT_EQ(call("GET", "/processes/x/cancel").headers["allow"], "POST");
  auto text =
      client_->request("POST", "/processes/x/cancel", "reason=stop",
                       {{"Authorization", std::string("Bearer ") + kScheduleToken}, {"Content-Type", "text/plain"}});
  EXPECT_EQ(text.status, 415);
  EXPECT_TRUE(text.json().at("detail").is_string());
}

TEST_F(ProcessesApi, OversizedBodyIs413) {
  std::string big = R"({"reason":")" + std::string(70 * 1024, 'x') + R"(","requested_by":{}})";
  auto r = call("POST", "/processes/x/cancel", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.json(), json::parse(R"({"detail":"Request body too large"})"));
  // The agent keeps serving (on a new connection).
  EXPECT_EQ(call("GET", "/healthz").status, 200);
}

TEST_F(ProcessesApi, ListNewestFirstWithFiltersAndPaging) {
  for (int i = 0; i < 5; ++i) submit("list-" + std::to_string(i), 1, i % 2 ? "phone_02" : "phone_01");
  ASSERT_EQ(call("POST", "/processes/list-4/cancel", cancelBody()).status, 200);

  std::vector<std::string> seen;
  std::string target = "/processes?limit=2";
  for (int page = 0; page < 5; ++page) {
    auto r = call("GET", target, "", kReadToken);
    ASSERT_EQ(r.status, 200) << r.body;
    const auto body = r.json();
    for (const auto& p : body.at("processes").as_array()) seen.emplace_back(p.at("process_id").as_string());
    const auto& next = body.at("next_cursor");
    if (next.is_null()) break;
    target = "/processes?limit=2&cursor=" + std::string(next.as_string());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"list-4", "list-3", "list-2", "list-1", "list-0"}));

  auto on_phone2 = call("GET", "/processes?phone_id=phone_02", "", kReadToken).json().at("processes").as_array();
  ASSERT_EQ(on_phone2.size(), 2u);
  EXPECT_EQ(on_phone2[0].at("process_id"), "list-3");
  auto cancelled = call("GET", "/processes?status=cancelled", "", kReadToken).json().at("processes").as_array();
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_EQ(cancelled[0].at("process_id"), "list-4");
  auto queued = call("GET", "/processes?status=queued&phone_id=phone_01", "", kReadToken);
  EXPECT_EQ(queued.json().at("processes").as_array().size(), 2u);
  EXPECT_TRUE(queued.json().at("next_cursor").is_null());

  auto bad = call("GET", "/processes?limit=501&status=nope", "", kReadToken);
  EXPECT_EQ(bad.status, 422);
  EXPECT_EQ(bad.json().at("detail").as_array().size(), 2u);
  EXPECT_EQ(call("GET", "/processes?cursor=garbage", "", kReadToken).status, 422);
}

}  // namespace
}  // namespace phonefarm::testing
