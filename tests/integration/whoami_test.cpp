// GET /whoami against the real agent over HTTP: each token of the tokens
// file answers its own name and scope (read, operate, schedule); a wrong or
// missing token is the usual 401, and no answer ever carries the token.
#include <string>

#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;

using Whoami = AgentFixture;

// Neither the body nor any header of `r` holds `token`.
void expectNoToken(const HttpClient::Response& r, const std::string& token) {
  EXPECT_EQ(r.body.find(token), std::string::npos) << r.body;
  for (const auto& [name, value] : r.headers) EXPECT_EQ(value.find(token), std::string::npos) << name;
}

TEST_F(Whoami, EachTokenGetsItsNameAndScope) {
  for (const auto& [token, name, scope] :
       std::vector<std::tuple<const char*, const char*, const char*>>{{kReadToken, "reader", "read"},
                                                                      {kOperateToken, "operator", "operate"},
                                                                      {kScheduleToken, "scheduler", "schedule"}}) {
    auto r = call("GET", "/whoami", "", token);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/json; charset=utf-8");
    EXPECT_EQ(r.json(), (json::object{{"name", name}, {"scope", scope}})) << r.body;
    expectNoToken(r, token);
  }
  EXPECT_FALSE(agent_->findLine(kOperateToken)) << "a token reached the agent's log";
}

TEST_F(Whoami, AWrongOrMissingTokenIsNotAuthenticated) {
  const std::string wrong = "not-a-token-of-this-agent-0123456789";
  auto r = call("GET", "/whoami", "", wrong.c_str());
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(r.json(), (json::object{{"detail", "Not authenticated"}})) << r.body;
  EXPECT_EQ(r.header("www-authenticate"), "Bearer");
  expectNoToken(r, wrong);
  EXPECT_FALSE(agent_->findLine(wrong)) << "the wrong token reached the agent's log";

  r = call("GET", "/whoami", "", nullptr);
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(r.json(), (json::object{{"detail", "Not authenticated"}})) << r.body;

  // Only GET (and HEAD) are served; the path is not a prefix match.
  r = call("POST", "/whoami", "{}", kScheduleToken);
  EXPECT_EQ(r.status, 405) << r.body;
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  EXPECT_EQ(call("GET", "/whoami/x", "", kReadToken).status, 404);
}

}  // namespace
}  // namespace phonefarm::testing
