// GET /debug against the real agent with work running: operate scope only,
// and what it shows — version, config without secrets, readiness, the adb
// server's state, the work's cgroup leaf with its pids, the agent's named
// threads — with none of the tokens anywhere in the answer.
#include <set>
#include <string>

#include "tests/integration/work_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;

class DebugApi : public WorkFixture {};

TEST_F(DebugApi, NeedsTheOperateScope) {
  EXPECT_EQ(call("GET", "/debug", "", nullptr).status, 401);
  auto r = call("GET", "/debug", "", kReadToken);
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(r.json(), json::parse(R"({"detail":"Forbidden"})"));
}

TEST_F(DebugApi, ShowsTheAgentAndItsWorkButNoSecret) {
  const auto started = outDir() / "started";
  const std::string job = writeJob("hold.sh", "#!/bin/sh\necho $$ > " + started.string() + "\nexec sleep 600\n");
  submitWork("dbg-1", {{job}});
  const auto pids = parsePids(waitForFile(started, [](const std::string& s) { return !s.empty(); }));
  ASSERT_EQ(pids.size(), 1u);

  auto r = call("GET", "/debug", "", kOperateToken);
  ASSERT_EQ(r.status, 200) << r.body;
  for (const char* secret : {kReadToken, kOperateToken, kScheduleToken}) {
    EXPECT_EQ(r.body.find(secret), std::string::npos) << "token in GET /debug: " << r.body;
  }
  const auto body = r.json().as_object();
  EXPECT_EQ(body.at("agent").at("version"), PHONEFARM_VERSION);
  EXPECT_EQ(body.at("agent").at("pid"), static_cast<std::int64_t>(agent_->pid()));
  EXPECT_EQ(body.at("config").at("tokens_file"), (dir_.path() / "tokens").c_str());
  EXPECT_EQ(body.at("config").at("work").at("run_as"), "nobody");
  // Without systemd the agent forks the work itself ([work] launcher default).
  EXPECT_EQ(body.at("config").at("work").at("launcher"), "direct");
  EXPECT_EQ(body.at("config").at("phones").as_array().size(), 2u);
  EXPECT_EQ(body.at("readiness").at("store"), "ok");
  // The fixture's adb server address has nothing listening.
  EXPECT_EQ(body.at("adb").at("server"), "127.0.0.1:1");
  EXPECT_EQ(body.at("adb").at("up"), false);
  EXPECT_TRUE(body.at("adb").at("error").is_string());
  EXPECT_EQ(body.at("metrics").at("phonefarm_executor_started_total"), 1.0) << r.body;

  const auto& work = body.at("work").as_object();
  EXPECT_EQ(work.at("launcher"), "direct") << r.body;
  if (!cgroup_.empty()) {
    ASSERT_EQ(work.at("runtime"), "cgroup") << r.body;
    const auto& leaves = work.at("tree").at("leaves").as_array();
    ASSERT_EQ(leaves.size(), 1u) << r.body;
    const auto& pids_json = leaves.at(0).at("pids").as_array();
    bool found = false;
    for (const auto& p : pids_json) found = found || p.as_int64() == pids[0];
    EXPECT_TRUE(found) << "job pid " << pids[0] << " not in " << json::serialize(leaves);
    EXPECT_EQ(leaves.at(0).at("events").at("populated"), 1);
  } else {
    EXPECT_EQ(work.at("runtime"), "process-group") << r.body;
  }
  ASSERT_EQ(call("POST", "/processes/dbg-1/cancel", cancelBody("hard"), kOperateToken).status, 200);
  waitForStatus("dbg-1", "cancelled");
}

TEST_F(DebugApi, ListsTheAgentsThreadsByName) {
  auto r = call("GET", "/debug", "", kOperateToken);
  ASSERT_EQ(r.status, 200) << r.body;
  std::multiset<std::string> names;
  std::set<std::int64_t> tids;
  std::string main_name;
  const auto body = r.json();
  const auto& threads = body.at("threads").as_array();
  for (const auto& t : threads) {
    const auto tid = t.at("tid").as_int64();
    const std::string name(t.at("name").as_string());
    EXPECT_TRUE(tids.insert(tid).second) << "tid " << tid << " twice: " << r.body;
    names.insert(name);
    if (tid == static_cast<std::int64_t>(agent_->pid())) main_name = name;
  }
  // The main thread keeps the process's name (ps, pgrep); the loop runs on pf-io.
  EXPECT_EQ(main_name, "phonefarm-agent") << r.body;
  for (const char* name : {"pf-io", "pf-store", "pf-ckpt", "pf-log-flush", "pf-adb-probe"}) {
    EXPECT_EQ(names.count(name), 1u) << name << " in " << json::serialize(threads);
  }
}

}  // namespace
}  // namespace phonefarm::testing
