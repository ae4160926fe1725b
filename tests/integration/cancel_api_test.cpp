// POST /processes/{id}/cancel and the legacy POST /cancel against the real
// agent: the seed's example reproduced verbatim, repeated cancels, the audit
// trail, unknown fields, and every validation failure.
#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;

class CancelApi : public AgentFixture {};

// The request body exactly as the seed page's curl example sends it.
constexpr const char* kSeedRequestBody = R"({
    "reason": "operator requested stop",
    "strategy": "soft_then_force",
    "force_after_seconds": 10,
    "requested_by": {
      "system": "ugc-tracker",
      "user": "operator@example.com",
      "metadata": {}
    }
  })";

TEST_F(CancelApi, SeedExampleReproduced) {
  // The seed's ids: a process on phone_01 for account_user095916355 with one pending item.
  auto submitted = call("POST", "/processes", R"({
      "process_id": "3e6f2e7b-4e3c-4c7c-b8d7-0c53d83f9870", "phone_id": "phone_01",
      "account_id": "account_user095916355",
      "requested_by": {"system": "scheduler", "user": null, "metadata": {}},
      "queue_items": [{"queue_item_id": "7c1a07f6-1d55-4f79-a403-8a8420f1b62b",
                       "command": ["/usr/bin/true"]}]})");
  ASSERT_EQ(submitted.status, 201) << submitted.body;

  auto r = client_->request(
      "POST", "/processes/3e6f2e7b-4e3c-4c7c-b8d7-0c53d83f9870/cancel", kSeedRequestBody,
      {{"Authorization", std::string("Bearer ") + kOperateToken}, {"Content-Type", "application/json"}});
  ASSERT_EQ(r.status, 200) << r.body;
  const auto body = r.json().as_object();
  // Every field of the seed's response example, with the seed's values.
  EXPECT_EQ(body.at("status"), "cancel_requested");
  EXPECT_EQ(body.at("cancelled_queue_item_ids"), json::parse(R"(["7c1a07f6-1d55-4f79-a403-8a8420f1b62b"])"));
  EXPECT_EQ(body.at("active_queue_item_ids"), json::array{});
  EXPECT_EQ(body.at("active_target"), json::parse(R"({
      "process_id": "3e6f2e7b-4e3c-4c7c-b8d7-0c53d83f9870", "phone_id": "phone_01",
      "account_id": "account_user095916355", "queue_item_id": null,
      "capability_request_id": "3e6f2e7b-4e3c-4c7c-b8d7-0c53d83f9870"})"));
  const auto& t = body.at("termination").as_object();
  EXPECT_EQ(t.at("process_id"), "3e6f2e7b-4e3c-4c7c-b8d7-0c53d83f9870");
  EXPECT_EQ(t.at("status"), "not_needed");
  EXPECT_EQ(t.at("terminate_issued"), false);
  EXPECT_TRUE(t.at("container").is_null());
  EXPECT_TRUE(t.at("force_at").is_null());
  EXPECT_TRUE(t.at("phone_reset").is_null());
  const auto& p = body.at("process").as_object();
  EXPECT_EQ(p.at("process_id"), "3e6f2e7b-4e3c-4c7c-b8d7-0c53d83f9870");
  EXPECT_EQ(p.at("status"), "cancelled");
  EXPECT_EQ(p.at("queue_items").at(0).at("status"), "cancelled");
  EXPECT_EQ(p.at("cancel").at("reason"), "operator requested stop");
  EXPECT_EQ(p.at("cancel").at("strategy"), "soft_then_force");
  EXPECT_EQ(p.at("cancel").at("requested_by"),
            json::parse(R"({"system":"ugc-tracker","user":"operator@example.com","metadata":{}})"));

  // `process` is the stored process after the request.
  auto stored = call("GET", "/processes/3e6f2e7b-4e3c-4c7c-b8d7-0c53d83f9870", "", kReadToken).json().as_object();
  for (const char* key : {"status", "queue_items", "cancel", "updated_at"}) EXPECT_EQ(stored.at(key), p.at(key)) << key;
}

TEST_F(CancelApi, RepeatedCancelIsIgnoredTerminalAndAudited) {
  submit("again", 2);
  auto first = call("POST", "/processes/again/cancel", cancelBody("hard"), kOperateToken);
  ASSERT_EQ(first.status, 200);
  auto second = call("POST", "/processes/again/cancel", cancelBody("soft"), kOperateToken);
  ASSERT_EQ(second.status, 200);
  const auto b = second.json().as_object();
  EXPECT_EQ(b.at("status"), "ignored_terminal");
  EXPECT_EQ(b.at("cancelled_queue_item_ids"), json::array{});
  EXPECT_EQ(b.at("termination").at("status"), "not_needed");
  EXPECT_EQ(b.at("process"), first.json().at("process"));  // nothing changed

  auto audit = call("GET", "/processes/again", "", kReadToken).json().at("cancel_audit").as_array();
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0].at("strategy"), "hard");
  EXPECT_EQ(audit[0].at("outcome"), "cancel_requested");
  EXPECT_EQ(audit[0].at("termination_status"), "not_needed");
  EXPECT_EQ(audit[0].at("force_after_seconds"), 10);
  EXPECT_EQ(audit[0].at("requested_by"), json::parse(R"({"system":"test"})"));
  EXPECT_EQ(audit[0].at("reason"), "test");
  EXPECT_EQ(audit[1].at("strategy"), "soft");
  EXPECT_EQ(audit[1].at("outcome"), "ignored_terminal");
}

TEST_F(CancelApi, DefaultsUnknownFieldsAndNulls) {
  submit("defaults");
  auto r = call("POST", "/processes/defaults/cancel",
                R"({"reason":"r","requested_by":{"x":1},"strategy":null,"force_after_seconds":null,"extra":[1]})",
                kOperateToken);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json().at("process").at("cancel").at("strategy"), "soft_then_force");
  auto audit = call("GET", "/processes/defaults", "", kReadToken).json().at("cancel_audit").as_array();
  EXPECT_EQ(audit.at(0).at("force_after_seconds"), 10);
}

TEST_F(CancelApi, ValidationFailuresChangeNothing) {
  submit("strict");
  struct Case {
    const char* body;
    const char* loc;
    const char* type;
  };
  for (const Case& c :
       {Case{R"({"requested_by":{}})", R"(["body","reason"])", "missing"},
        Case{R"({"reason":"r"})", R"(["body","requested_by"])", "missing"},
        Case{R"({"reason":"r","requested_by":{},"strategy":"kill"})", R"(["body","strategy"])", "literal_error"},
        Case{R"({"reason":"r","requested_by":{},"force_after_seconds":-1})", R"(["body","force_after_seconds"])",
             "greater_than_equal"},
        Case{R"({"reason":"r","requested_by":{},"force_after_seconds":1.5})", R"(["body","force_after_seconds"])",
             "int_type"},
        Case{R"({"reason":"r","requested_by":{},"force_after_seconds":"10"})", R"(["body","force_after_seconds"])",
             "int_type"},
        Case{R"({"reason":"r","requested_by":{},"force_after_seconds":true})", R"(["body","force_after_seconds"])",
             "int_type"},
        Case{R"({"reason":"r",)", R"(["body"])", "json_invalid"}}) {
    auto r = call("POST", "/processes/strict/cancel", c.body, kOperateToken);
    ASSERT_EQ(r.status, 422) << c.body;
    const auto body = r.json();
    const auto& d = body.at("detail").at(0);
    EXPECT_EQ(json::serialize(d.at("loc")), c.loc) << c.body;
    EXPECT_EQ(d.at("type"), c.type) << c.body;
  }
  auto p = call("GET", "/processes/strict", "", kReadToken).json();
  EXPECT_EQ(p.at("status"), "queued");
  EXPECT_EQ(p.at("cancel_audit"), json::array{});
  // Validation comes before the lookup (FastAPI order): 422 even for an unknown id.
  EXPECT_EQ(call("POST", "/processes/missing/cancel", "{}", kOperateToken).status, 422);
  auto missing = call("POST", "/processes/missing/cancel", cancelBody(), kOperateToken);
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.json(), json::parse(R"({"detail":"Process not found"})"));
}

TEST_F(CancelApi, LegacyQueueItemCancel) {
  submit("legacy", 2);
  auto r =
      call("POST", "/cancel", R"({"queue_item_id":"legacy-q0","reason":"r","requested_by":{"u":1}})", kOperateToken);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json().at("status"), "cancel_requested");
  EXPECT_EQ(r.json().at("queue_item").at("queue_item_id"), "legacy-q0");
  EXPECT_EQ(r.json().at("queue_item").at("status"), "cancelled");
  auto p = call("GET", "/processes/legacy", "", kReadToken).json();
  EXPECT_EQ(p.at("status"), "queued");  // the rest of the process goes on
  EXPECT_EQ(p.at("queue_items").at(1).at("status"), "pending");
  EXPECT_EQ(p.at("cancel_audit").at(0).at("endpoint"), "queue_item");
  EXPECT_EQ(p.at("cancel_audit").at(0).at("queue_item_id"), "legacy-q0");

  auto again =
      call("POST", "/cancel", R"({"queue_item_id":"legacy-q0","reason":"r","requested_by":{}})", kOperateToken);
  EXPECT_EQ(again.json().at("status"), "ignored_terminal");
  auto last = call("POST", "/cancel", R"({"queue_item_id":"legacy-q1","reason":"r","requested_by":{}})", kOperateToken);
  EXPECT_EQ(last.json().at("queue_item").at("status"), "cancelled");
  EXPECT_EQ(call("GET", "/processes/legacy", "", kReadToken).json().at("status"), "cancelled");

  auto unknown = call("POST", "/cancel", R"({"queue_item_id":"nope","reason":"r","requested_by":{}})", kOperateToken);
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.json(), json::parse(R"({"detail":"Queue item not found"})"));
  EXPECT_EQ(call("POST", "/cancel", R"({"reason":"r"})", kOperateToken).status, 422);
}

TEST_F(CancelApi, ConcurrentCancelsOfOneProcessAreSerialised) {
  submit("race", 3);
  // Several connections cancel the same process at once: exactly one wins.
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(std::make_unique<HttpClient>("127.0.0.1", port_));
  std::vector<std::thread> threads;
  std::vector<std::string> outcomes(clients.size());
  for (std::size_t i = 0; i < clients.size(); ++i) {
    threads.emplace_back([&, i] {
      auto r = clients[i]->request(
          "POST", "/processes/race/cancel", cancelBody(),
          {{"Authorization", std::string("Bearer ") + kOperateToken}, {"Content-Type", "application/json"}});
      outcomes[i] = r.status == 200 ? std::string(r.json().at("status").as_string()) : std::to_string(r.status);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "cancel_requested"), 1);
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "ignored_terminal"), 7);
  EXPECT_EQ(call("GET", "/processes/race", "", kReadToken).json().at("cancel_audit").as_array().size(), 8u);
}

}  // namespace
}  // namespace phonefarm::testing
