// GET /phones/{id}/resets against the real agent over HTTP: a phone's reset
// history newest first with each step, paged by `limit` and `cursor` as GET
// /processes is (no gap and no duplicate across pages, also while new resets
// are recorded), a read token suffices, an unknown phone is 404 and bad
// parameters are refused with the parameter named. The resets are real
// technician ladders: no adb server is reachable here, so each one fails
// within moments with its three steps recorded.
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

class PhoneResets : public AgentFixture {
 protected:
  // A technician's reset of `phone`; returns its reset_id once it has ended.
  std::string resetAndWait(const std::string& phone, const std::string& reason) {
    auto r = call("POST", "/phones/" + phone + "/reset",
                  R"({"reason":")" + reason + R"(","requested_by":{"user":"tech"}})", kOperateToken);
    EXPECT_EQ(r.status, 202) << r.body;
    if (r.status != 202) return "";
    const std::string id(r.json().at("reset_id").as_string());
    const auto deadline = std::chrono::steady_clock::now() + seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      const auto p = call("GET", "/phones/" + phone, "", kReadToken).json();
      const auto& last = p.at("last_reset");
      if (last.is_object() && last.at("reset_id") == id.c_str() && last.at("ended_at").is_string()) return id;
      std::this_thread::sleep_for(milliseconds(20));
    }
    ADD_FAILURE() << "reset " << id << " of " << phone << " did not end\n" << agent_->output();
    return id;
  }

  json::object page(const std::string& phone, const std::string& query = "") {
    auto r = call("GET", "/phones/" + phone + "/resets" + (query.empty() ? "" : "?" + query), "", kReadToken);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? r.json().as_object() : json::object{};
  }

  static std::vector<std::string> ids(const json::object& page) {
    std::vector<std::string> out;
    if (const auto* list = page.if_contains("resets")) {
      for (const auto& r : list->as_array()) out.emplace_back(r.at("reset_id").as_string());
    }
    return out;
  }
};

TEST_F(PhoneResets, HistoryIsNewestFirstWithEveryStep) {
  const std::string first = resetAndWait("phone_02", "first");
  const std::string other = resetAndWait("phone_01", "another phone");
  const std::string second = resetAndWait("phone_02", "second");
  const std::string third = resetAndWait("phone_02", "third");

  const auto p = page("phone_02");  // a read token
  EXPECT_EQ(ids(p), (std::vector<std::string>{third, second, first})) << json::serialize(p);
  EXPECT_TRUE(p.at("next_cursor").is_null());
  const auto& resets = p.at("resets").as_array();
  ASSERT_EQ(resets.size(), 3u);
  const char* reasons[] = {"third", "second", "first"};
  for (std::size_t i = 0; i < resets.size(); ++i) {
    const auto& r = resets[i].as_object();
    EXPECT_EQ(r.at("phone_id"), "phone_02");
    EXPECT_EQ(r.at("trigger"), "technician");
    EXPECT_EQ(r.at("reason"), reasons[i]);
    EXPECT_EQ(r.at("status"), "failed");  // no adb server: nothing brings the phone back
    EXPECT_EQ(r.at("requested_by"), json::parse(R"({"user":"tech"})"));
    EXPECT_TRUE(r.at("requested_at").is_string());
    EXPECT_TRUE(r.at("ended_at").is_string());
    const auto& steps = r.at("steps").as_array();
    ASSERT_EQ(steps.size(), 3u) << json::serialize(r);
    const char* names[] = {"adb_reconnect", "usb_reset", "hub_power_cycle"};
    for (std::size_t s = 0; s < steps.size(); ++s) {
      EXPECT_EQ(steps[s].at("step"), names[s]);
      EXPECT_TRUE(steps[s].at("status") == "failed" || steps[s].at("status") == "skipped") << steps[s];
      EXPECT_TRUE(steps[s].at("started_at").is_string());
      EXPECT_TRUE(steps[s].at("ended_at").is_string());
      EXPECT_TRUE(steps[s].at("detail").is_string());
    }
  }
  // The newest is the phone's last_reset.
  EXPECT_EQ(call("GET", "/phones/phone_02", "", kReadToken).json().at("last_reset"), resets[0]);
  EXPECT_EQ(ids(page("phone_01")), (std::vector<std::string>{other}));
}

TEST_F(PhoneResets, PagesFollowTheCursorWithNoGapOrDuplicate) {
  std::vector<std::string> made;
  for (int i = 0; i < 5; ++i) {
    made.push_back(resetAndWait("phone_02", "r" + std::to_string(i)));
    if (i == 2) resetAndWait("phone_01", "interleaved");  // another phone's, never listed here
  }
  const std::vector<std::string> newest_first(made.rbegin(), made.rend());

  auto p1 = page("phone_02", "limit=2");
  EXPECT_EQ(ids(p1), (std::vector<std::string>{newest_first[0], newest_first[1]}));
  ASSERT_TRUE(p1.at("next_cursor").is_string()) << json::serialize(p1);
  // A reset recorded between two pages shifts nothing: the cursor is a
  // position in the history, not an offset.
  const std::string later = resetAndWait("phone_02", "later");
  auto p2 = page("phone_02", "limit=2&cursor=" + std::string(p1.at("next_cursor").as_string()) + "&unknown=x");
  EXPECT_EQ(ids(p2), (std::vector<std::string>{newest_first[2], newest_first[3]}));
  ASSERT_TRUE(p2.at("next_cursor").is_string()) << json::serialize(p2);
  auto p3 = page("phone_02", "cursor=" + std::string(p2.at("next_cursor").as_string()) + "&limit=2");
  EXPECT_EQ(ids(p3), (std::vector<std::string>{newest_first[4]}));
  EXPECT_TRUE(p3.at("next_cursor").is_null()) << json::serialize(p3);
  // Exactly as many as fit: the last page says so.
  auto all = page("phone_02", "limit=6");
  EXPECT_EQ(ids(all).size(), 6u);
  EXPECT_EQ(ids(all).front(), later);
  EXPECT_TRUE(all.at("next_cursor").is_null()) << json::serialize(all);
  // Default limit (100) takes everything.
  EXPECT_EQ(ids(page("phone_02")), ids(all));
}

TEST_F(PhoneResets, UnknownPhoneIsNotFoundAndBadParametersAreRefused) {
  // A phone never reset has an empty history.
  EXPECT_EQ(page("phone_01"), (json::object{{"resets", json::array{}}, {"next_cursor", nullptr}}));
  const std::string id = resetAndWait("phone_02", "kept");
  auto r = call("GET", "/phones/phone_99/resets", "", kReadToken);
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.json(), (json::object{{"detail", "Phone not found"}}));
  // An id no configured phone can have (bad characters, too long) is unknown too.
  EXPECT_EQ(call("GET", "/phones/a%20b/resets", "", kReadToken).status, 404);
  EXPECT_EQ(call("GET", "/phones/" + std::string(200, 'x') + "/resets", "", kReadToken).status, 404);
  // A path that does not decode is 400.
  EXPECT_EQ(call("GET", "/phones/%zz/resets", "", kReadToken).status, 400);
  EXPECT_EQ(call("GET", "/phones/phone%00/resets", "", kReadToken).status, 400);

  struct Bad {
    std::string query;
    std::string param;
    std::string type;
  };
  for (const auto& bad : std::vector<Bad>{{"limit=0", "limit", "greater_than_equal"},
                                          {"limit=501", "limit", "less_than_equal"},
                                          {"limit=two", "limit", "int_parsing"},
                                          {"limit=", "limit", "int_parsing"},
                                          {"limit=1e3", "limit", "int_parsing"},
                                          {"cursor=abc", "cursor", "value_error"},
                                          {"cursor=c0", "cursor", "value_error"},
                                          {"cursor=c-5", "cursor", "value_error"},
                                          {"cursor=c99999999999999999999", "cursor", "value_error"},
                                          {"cursor=%zz", "cursor", "value_error"},
                                          {"cursor=c1%00", "cursor", "value_error"}}) {
    r = call("GET", "/phones/phone_02/resets?" + bad.query, "", kReadToken);
    ASSERT_EQ(r.status, 422) << bad.query << ": " << r.body;
    const auto body = r.json();
    const auto& detail = body.at("detail").as_array();
    ASSERT_EQ(detail.size(), 1u) << r.body;
    EXPECT_EQ(detail[0].at("loc"), (json::array{"query", bad.param.c_str()})) << r.body;
    EXPECT_EQ(detail[0].at("type"), bad.type.c_str()) << bad.query << ": " << r.body;
    EXPECT_FALSE(detail[0].at("msg").as_string().empty());
  }
  // Both wrong at once: both named.
  r = call("GET", "/phones/phone_02/resets?limit=0&cursor=x", "", kReadToken);
  ASSERT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json().at("detail").as_array().size(), 2u) << r.body;

  // Only GET; a token is needed; nothing above changed the history.
  EXPECT_EQ(call("POST", "/phones/phone_02/resets", "{}", kScheduleToken).status, 405);
  EXPECT_EQ(call("GET", "/phones/phone_02/resets", "", nullptr).status, 401);
  EXPECT_EQ(ids(page("phone_02")), (std::vector<std::string>{id}));
}

}  // namespace
}  // namespace phonefarm::testing
