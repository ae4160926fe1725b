// Validation of every field of the cancel, legacy cancel and submit bodies,
// and of the list query: accepted values, defaults, and each rejection with
// its loc and Pydantic type.
#include "agent/api/request_validation.hpp"

#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>

namespace phonefarm::api {
namespace {

template <class T>
const FieldErrors& errorsOf(const Validated<T>& v) {
  static const FieldErrors kNone;
  const auto* e = std::get_if<FieldErrors>(&v);
  return e ? *e : kNone;
}

// "body.strategy:literal_error" for each error, to compare compactly.
template <class T>
std::vector<std::string> summary(const Validated<T>& v) {
  std::vector<std::string> out;
  for (const auto& e : errorsOf(v)) {
    std::string loc;
    for (const auto& part : e.loc) {
      if (!loc.empty()) loc += ".";
      loc += part.is_string() ? std::string(part.as_string()) : std::to_string(part.as_int64());
    }
    out.push_back(loc + ":" + e.type);
  }
  return out;
}

using Strings = std::vector<std::string>;

constexpr const char* kSeedExample = R"({
    "reason": "operator requested stop",
    "strategy": "soft_then_force",
    "force_after_seconds": 10,
    "requested_by": {
      "system": "ugc-tracker",
      "user": "operator@example.com",
      "metadata": {}
    }
  })";

TEST(CancelValidation, SeedExampleIsAccepted) {
  auto v = parseCancelRequest(kSeedExample);
  ASSERT_TRUE(std::holds_alternative<CancelRequest>(v)) << summary(v).size();
  const auto& r = std::get<CancelRequest>(v);
  EXPECT_EQ(r.reason, "operator requested stop");
  EXPECT_EQ(r.strategy, CancelStrategy::kSoftThenForce);
  EXPECT_EQ(r.force_after_seconds, 10);
  EXPECT_EQ(boost::json::serialize(r.requested_by),
            R"({"system":"ugc-tracker","user":"operator@example.com","metadata":{}})");
}

TEST(CancelValidation, DefaultsWhenOptionalFieldsAbsentOrNull) {
  for (const char* body : {R"({"reason":"r","requested_by":{}})",
                           R"({"reason":"r","requested_by":{},"strategy":null,"force_after_seconds":null})"}) {
    auto v = parseCancelRequest(body);
    ASSERT_TRUE(std::holds_alternative<CancelRequest>(v)) << body;
    EXPECT_EQ(std::get<CancelRequest>(v).strategy, CancelStrategy::kSoftThenForce);
    EXPECT_EQ(std::get<CancelRequest>(v).force_after_seconds, 10);
  }
}

TEST(CancelValidation, EachStrategyAccepted) {
  for (auto [name, s] : {std::pair{"soft", CancelStrategy::kSoft}, std::pair{"hard", CancelStrategy::kHard},
                         std::pair{"soft_then_force", CancelStrategy::kSoftThenForce}}) {
    auto v = parseCancelRequest(std::string(R"({"reason":"r","requested_by":{},"strategy":")") + name + "\"}");
    ASSERT_TRUE(std::holds_alternative<CancelRequest>(v)) << name;
    EXPECT_EQ(std::get<CancelRequest>(v).strategy, s);
  }
}

TEST(CancelValidation, UnknownFieldsIgnored) {
  auto v = parseCancelRequest(R"({"reason":"r","requested_by":{},"priority":5,"extra":{"a":[1,2]}})");
  EXPECT_TRUE(std::holds_alternative<CancelRequest>(v));
}

TEST(CancelValidation, MissingRequiredFieldsAllReported) {
  EXPECT_EQ(summary(parseCancelRequest("{}")), (Strings{"body.reason:missing", "body.requested_by:missing"}));
}

TEST(CancelValidation, ReasonRules) {
  EXPECT_EQ(summary(parseCancelRequest(R"({"reason":"","requested_by":{}})")), Strings{"body.reason:string_too_short"});
  EXPECT_EQ(summary(parseCancelRequest(R"({"reason":5,"requested_by":{}})")), Strings{"body.reason:string_type"});
  EXPECT_EQ(summary(parseCancelRequest(R"({"reason":null,"requested_by":{}})")), Strings{"body.reason:string_type"});
  const std::string long_reason(1001, 'x');
  EXPECT_EQ(summary(parseCancelRequest(R"({"reason":")" + long_reason + R"(","requested_by":{}})")),
            Strings{"body.reason:string_too_long"});
  const std::string max_reason(1000, 'x');
  EXPECT_TRUE(std::holds_alternative<CancelRequest>(
      parseCancelRequest(R"({"reason":")" + max_reason + R"(","requested_by":{}})")));
}

TEST(CancelValidation, RequestedByMustBeObject) {
  for (const char* by : {"\"me\"", "[]", "null", "1"}) {
    EXPECT_EQ(summary(parseCancelRequest(std::string(R"({"reason":"r","requested_by":)") + by + "}")),
              Strings{"body.requested_by:dict_type"})
        << by;
  }
}

TEST(CancelValidation, UnknownStrategyRejected) {
  for (const char* s : {"\"kill\"", "\"SOFT\"", "1", "true", "\"\""}) {
    EXPECT_EQ(summary(parseCancelRequest(std::string(R"({"reason":"r","requested_by":{},"strategy":)") + s + "}")),
              Strings{"body.strategy:literal_error"})
        << s;
  }
}

TEST(CancelValidation, ForceAfterSecondsRules) {
  auto with = [](const std::string& v) {
    return parseCancelRequest(R"({"reason":"r","requested_by":{},"force_after_seconds":)" + v + "}");
  };
  EXPECT_EQ(std::get<CancelRequest>(with("0")).force_after_seconds, 0);
  EXPECT_EQ(std::get<CancelRequest>(with("2147483647")).force_after_seconds, 2147483647);
  EXPECT_EQ(summary(with("-1")), Strings{"body.force_after_seconds:greater_than_equal"});
  EXPECT_EQ(summary(with("2147483648")), Strings{"body.force_after_seconds:less_than_equal"});
  EXPECT_EQ(summary(with("18446744073709551615")), Strings{"body.force_after_seconds:less_than_equal"});
  EXPECT_EQ(summary(with("1.5")), Strings{"body.force_after_seconds:int_type"});
  EXPECT_EQ(summary(with("10.0")), Strings{"body.force_after_seconds:int_type"});
  EXPECT_EQ(summary(with("\"10\"")), Strings{"body.force_after_seconds:int_type"});
  EXPECT_EQ(summary(with("true")), Strings{"body.force_after_seconds:int_type"});
}

TEST(CancelValidation, MalformedJsonAndNonObjects) {
  EXPECT_EQ(summary(parseCancelRequest("{\"reason\": ")), Strings{"body:json_invalid"});
  EXPECT_EQ(summary(parseCancelRequest("[1,2]")), Strings{"body:model_attributes_type"});
  EXPECT_EQ(summary(parseCancelRequest("\"x\"")), Strings{"body:model_attributes_type"});
  EXPECT_EQ(summary(parseCancelRequest("")), Strings{"body:missing"});
  EXPECT_EQ(summary(parseCancelRequest("{} trailing")), Strings{"body:json_invalid"});
  std::string deep(200, '[');
  EXPECT_EQ(summary(parseCancelRequest(deep)), Strings{"body:json_invalid"});
}

TEST(LegacyCancelValidation, FieldsAndErrors) {
  auto ok = parseLegacyCancelRequest(R"({"queue_item_id":"qi-1","reason":"r","requested_by":{"user":"u"}})");
  ASSERT_TRUE(std::holds_alternative<LegacyCancelRequest>(ok));
  EXPECT_EQ(std::get<LegacyCancelRequest>(ok).queue_item_id, "qi-1");
  EXPECT_EQ(summary(parseLegacyCancelRequest("{}")),
            (Strings{"body.queue_item_id:missing", "body.reason:missing", "body.requested_by:missing"}));
  EXPECT_EQ(summary(parseLegacyCancelRequest(R"({"queue_item_id":"a b","reason":"r","requested_by":{}})")),
            Strings{"body.queue_item_id:string_pattern_mismatch"});
}

bool knownPhone(std::string_view id) { return id == "phone_01"; }

std::string submitBody(const std::string& item = R"({"command":["/opt/jobs/post.sh","--x"]})") {
  return R"({"phone_id":"phone_01","account_id":"acc_1","requested_by":{"system":"s"},"queue_items":[)" + item + "]}";
}

TEST(SubmitValidation, MinimalAndFullBodies) {
  auto v = parseSubmitRequest(submitBody(), knownPhone);
  ASSERT_TRUE(std::holds_alternative<SubmitRequest>(v));
  const auto& r = std::get<SubmitRequest>(v);
  EXPECT_FALSE(r.process_id);
  EXPECT_EQ(r.items.size(), 1u);
  EXPECT_EQ(r.items[0].stop_signal, "SIGTERM");
  EXPECT_FALSE(r.items[0].timeout_seconds);

  auto full = parseSubmitRequest(
      R"({"process_id":"p-1","phone_id":"phone_01","account_id":"account_user095916355",
          "capability_request_id":"cap-1","requested_by":{"system":"scheduler","user":null,"metadata":{}},
          "queue_items":[{"queue_item_id":"q-1","command":["/opt/jobs/post.sh","--x"],"env":{"K":"V"},
                          "timeout_seconds":600,"stop_signal":"SIGINT"},
                         {"command":["/bin/true"],"stop_signal":"none"}],"unknown":1})",
      knownPhone);
  ASSERT_TRUE(std::holds_alternative<SubmitRequest>(full)) << summary(full).size();
  const auto& f = std::get<SubmitRequest>(full);
  EXPECT_EQ(*f.process_id, "p-1");
  EXPECT_EQ(*f.capability_request_id, "cap-1");
  EXPECT_EQ(f.items[0].env, (EnvList{{"K", "V"}}));
  EXPECT_EQ(*f.items[0].timeout_seconds, 600);
  EXPECT_EQ(f.items[0].stop_signal, "SIGINT");
  EXPECT_EQ(f.items[1].stop_signal, "none");
}

TEST(SubmitValidation, RequiredFields) {
  EXPECT_EQ(summary(parseSubmitRequest("{}", knownPhone)),
            (Strings{"body.phone_id:missing", "body.account_id:missing", "body.queue_items:missing"}));
}

TEST(SubmitValidation, IdsAndPhone) {
  EXPECT_EQ(
      summary(parseSubmitRequest(
          R"({"process_id":"bad id","phone_id":"phone_02","account_id":"a/b","queue_items":[{"command":["/x"]}]})",
          knownPhone)),
      (Strings{"body.process_id:string_pattern_mismatch", "body.phone_id:value_error",
               "body.account_id:string_pattern_mismatch"}));
  const std::string long_id(129, 'a');
  EXPECT_EQ(
      summary(parseSubmitRequest(R"({"process_id":")" + long_id +
                                     R"(","phone_id":"phone_01","account_id":"a","queue_items":[{"command":["/x"]}]})",
                                 knownPhone)),
      Strings{"body.process_id:string_pattern_mismatch"});
}

TEST(SubmitValidation, QueueItemsListBounds) {
  EXPECT_EQ(summary(parseSubmitRequest(R"({"phone_id":"phone_01","account_id":"a","queue_items":[]})", knownPhone)),
            Strings{"body.queue_items:too_short"});
  EXPECT_EQ(summary(parseSubmitRequest(R"({"phone_id":"phone_01","account_id":"a","queue_items":{}})", knownPhone)),
            Strings{"body.queue_items:list_type"});
  std::string many;
  for (int i = 0; i < 101; ++i) many += std::string(i ? "," : "") + R"({"command":["/x"]})";
  EXPECT_EQ(summary(parseSubmitRequest(submitBody(many), knownPhone)), Strings{"body.queue_items:too_long"});
}

TEST(SubmitValidation, CommandRules) {
  EXPECT_EQ(summary(parseSubmitRequest(submitBody(R"({})"), knownPhone)),
            Strings{"body.queue_items.0.command:missing"});
  EXPECT_EQ(summary(parseSubmitRequest(submitBody(R"({"command":[]})"), knownPhone)),
            Strings{"body.queue_items.0.command:too_short"});
  EXPECT_EQ(summary(parseSubmitRequest(submitBody(R"({"command":"/bin/true"})"), knownPhone)),
            Strings{"body.queue_items.0.command:list_type"});
  EXPECT_EQ(summary(parseSubmitRequest(submitBody(R"({"command":["bin/true"]})"), knownPhone)),
            Strings{"body.queue_items.0.command.0:value_error"});
  EXPECT_EQ(summary(parseSubmitRequest(submitBody(R"({"command":["/bin/echo",1]})"), knownPhone)),
            Strings{"body.queue_items.0.command.1:string_type"});
  EXPECT_EQ(summary(parseSubmitRequest(submitBody(R"({"command":["/bin/echo","a\u0000b"]})"), knownPhone)),
            Strings{"body.queue_items.0.command.1:value_error"});
  EXPECT_EQ(summary(parseSubmitRequest(submitBody(R"("x")"), knownPhone)),
            Strings{"body.queue_items.0:model_attributes_type"});
}

TEST(SubmitValidation, EnvRules) {
  auto env = [](const std::string& e) {
    return summary(parseSubmitRequest(submitBody(R"({"command":["/x"],"env":)" + e + "}"), knownPhone));
  };
  EXPECT_EQ(env(R"({"A_1":"v","_B":""})"), Strings{});
  EXPECT_EQ(env(R"([])"), Strings{"body.queue_items.0.env:dict_type"});
  EXPECT_EQ(env(R"({"1A":"v"})"), Strings{"body.queue_items.0.env.1A:value_error"});
  EXPECT_EQ(env(R"({"A=B":"v"})"), Strings{"body.queue_items.0.env.A=B:value_error"});
  EXPECT_EQ(env(R"({"A":1})"), Strings{"body.queue_items.0.env.A:string_type"});
  EXPECT_EQ(env(R"({"PHONEFARM_PHONE_ID":"x"})"), Strings{"body.queue_items.0.env.PHONEFARM_PHONE_ID:value_error"});
  EXPECT_EQ(env(R"({"ANDROID_SERIAL":"x"})"), Strings{"body.queue_items.0.env.ANDROID_SERIAL:value_error"});
}

TEST(SubmitValidation, TimeoutAndStopSignal) {
  auto item = [](const std::string& fields) {
    return summary(parseSubmitRequest(submitBody(R"({"command":["/x"],)" + fields + "}"), knownPhone));
  };
  EXPECT_EQ(item(R"("timeout_seconds":1)"), Strings{});
  EXPECT_EQ(item(R"("timeout_seconds":604800)"), Strings{});
  EXPECT_EQ(item(R"("timeout_seconds":0)"), Strings{"body.queue_items.0.timeout_seconds:greater_than_equal"});
  EXPECT_EQ(item(R"("timeout_seconds":604801)"), Strings{"body.queue_items.0.timeout_seconds:less_than_equal"});
  EXPECT_EQ(item(R"("timeout_seconds":"60")"), Strings{"body.queue_items.0.timeout_seconds:int_type"});
  EXPECT_EQ(item(R"("stop_signal":"SIGKILL")"), Strings{"body.queue_items.0.stop_signal:value_error"});
  EXPECT_EQ(item(R"("stop_signal":"SIGSTOP")"), Strings{"body.queue_items.0.stop_signal:value_error"});
  EXPECT_EQ(item(R"("stop_signal":15)"), Strings{"body.queue_items.0.stop_signal:string_type"});
  EXPECT_EQ(item(R"("stop_signal":"SIGUSR1")"), Strings{});
}

TEST(SubmitValidation, DuplicateQueueItemIds) {
  EXPECT_EQ(
      summary(parseSubmitRequest(
          submitBody(R"({"queue_item_id":"q","command":["/x"]},{"queue_item_id":"q","command":["/y"]})"), knownPhone)),
      Strings{"body.queue_items.1.queue_item_id:value_error"});
}

TEST(ListQueryValidation, DefaultsFiltersAndErrors) {
  auto q = std::get<ListQuery>(parseListQuery(""));
  EXPECT_EQ(q.limit, 100u);
  EXPECT_FALSE(q.status);
  auto f = std::get<ListQuery>(parseListQuery("status=queued&phone_id=phone%5F01&limit=5&other=1&cursor=c42"));
  EXPECT_EQ(*f.status, ProcessStatus::kQueued);
  EXPECT_EQ(*f.phone_id, "phone_01");
  EXPECT_EQ(f.limit, 5u);
  EXPECT_EQ(*f.cursor, 42);
  EXPECT_EQ(summary(parseListQuery("status=done")), Strings{"query.status:literal_error"});
  EXPECT_EQ(summary(parseListQuery("limit=0")), Strings{"query.limit:greater_than_equal"});
  EXPECT_EQ(summary(parseListQuery("limit=501")), Strings{"query.limit:less_than_equal"});
  EXPECT_EQ(summary(parseListQuery("limit=x")), Strings{"query.limit:int_parsing"});
  EXPECT_EQ(summary(parseListQuery("cursor=zzz")), Strings{"query.cursor:value_error"});
  EXPECT_EQ(summary(parseListQuery("phone_id=%zz")), Strings{"query.phone_id:value_error"});
}

TEST(Cursor, RoundTripAndRejects) {
  EXPECT_EQ(decodeCursor(encodeCursor(12345)), 12345);
  EXPECT_FALSE(decodeCursor("c"));
  EXPECT_FALSE(decodeCursor("c-1"));
  EXPECT_FALSE(decodeCursor("c0"));
  EXPECT_FALSE(decodeCursor("12"));
  EXPECT_FALSE(decodeCursor("c99999999999999999999999"));
}

}  // namespace
}  // namespace phonefarm::api
