// GET /processes/{id}/items/{item}/logs against the real agent running real
// work as `nobody`: the bytes a job writes, read by offset while it runs and
// after it ended, and a job that swaps its stdout.log for a symlink to a
// root-only file does not get the agent to read that file.
#include <sys/stat.h>

#include "tests/integration/work_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;

class LogsApi : public WorkFixture {
 protected:
  HttpClient::Response logs(const std::string& process_id, const std::string& item, const std::string& query = "") {
    return call("GET", "/processes/" + process_id + "/items/" + item + "/logs" + query, "", kReadToken);
  }

  // Reads the item's log from `offset` until `pred(all bytes so far)` holds.
  std::string waitForLog(const std::string& process_id, const std::string& item, const std::string& stream,
                         const std::function<bool(const std::string&)>& pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::string text;
    std::string offset = "0";
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = logs(process_id, item, "?stream=" + stream + "&offset=" + offset);
      EXPECT_EQ(r.status, 200) << r.body;
      if (r.status != 200) return text;
      text += r.body;
      offset = r.header("x-phonefarm-next-offset");
      if (pred(text)) return text;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "timed out waiting for the log of " << item << "; so far: " << text;
    return text;
  }
};

TEST_F(LogsApi, ReadsWhatTheJobWritesByOffsetWhileItRunsAndAfter) {
  const auto go = outDir() / "go";
  const std::string job = writeJob("talk.sh",
                                   "#!/bin/sh\n"
                                   "echo out-1\n"
                                   "echo err-1 >&2\n"
                                   "while [ ! -e " +
                                       go.string() +
                                       " ]; do sleep 0.02; done\n"
                                       "printf 'out-2 \\303\\244\\n'\n"
                                       "exit 0\n");
  submitWork("logs-1", {{job}});
  waitForItem("logs-1", 0, "executing");

  const std::string first =
      waitForLog("logs-1", "logs-1-q0", "stdout", [](const std::string& t) { return !t.empty(); });
  EXPECT_EQ(first, "out-1\n");
  auto running = logs("logs-1", "logs-1-q0", "?offset=6");
  ASSERT_EQ(running.status, 200) << running.body;
  EXPECT_EQ(running.body, "");
  EXPECT_EQ(running.header("x-phonefarm-item-status"), "executing");
  EXPECT_EQ(running.header("x-phonefarm-more"), "true");
  EXPECT_EQ(running.header("x-phonefarm-next-offset"), "6");
  EXPECT_EQ(running.header("content-type"), "text/plain; charset=utf-8");
  EXPECT_FALSE(running.header("x-phonefarm-execution-id").empty());
  EXPECT_EQ(waitForLog("logs-1", "logs-1-q0", "stderr", [](const std::string& t) { return !t.empty(); }), "err-1\n");

  writeFile(go, "", 0644);
  waitForStatus("logs-1", "succeeded");
  auto rest = logs("logs-1", "logs-1-q0", "?offset=6");
  ASSERT_EQ(rest.status, 200) << rest.body;
  EXPECT_EQ(rest.body, "out-2 \xc3\xa4\n");  // bytes as written
  EXPECT_EQ(rest.header("x-phonefarm-item-status"), "succeeded");
  EXPECT_EQ(rest.header("x-phonefarm-more"), "false");
  EXPECT_EQ(rest.header("x-phonefarm-next-offset"), "15");
  auto all = logs("logs-1", "logs-1-q0");
  EXPECT_EQ(all.body, "out-1\nout-2 \xc3\xa4\n");
}

TEST_F(LogsApi, AnItemThatNeverRanIsEmptyAndUnknownIdsAre404) {
  const std::string job = writeJob("fail.sh", "#!/bin/sh\necho failing >&2\nexit 3\n");
  submitWork("logs-2", {{job}, {job}});
  waitForStatus("logs-2", "failed");
  auto skipped = logs("logs-2", "logs-2-q1");
  ASSERT_EQ(skipped.status, 200) << skipped.body;
  EXPECT_EQ(skipped.body, "");
  EXPECT_EQ(skipped.header("x-phonefarm-item-status"), "skipped");
  EXPECT_EQ(skipped.header("x-phonefarm-more"), "false");
  auto failed = logs("logs-2", "logs-2-q0", "?stream=stderr");
  EXPECT_EQ(failed.body, "failing\n");

  auto no_item = logs("logs-2", "nope");
  EXPECT_EQ(no_item.status, 404);
  EXPECT_EQ(no_item.json(), json::parse(R"({"detail":"Queue item not found"})"));
  EXPECT_EQ(logs("nope", "logs-2-q0").status, 404);
  auto bad = logs("logs-2", "logs-2-q0", "?stream=both");
  EXPECT_EQ(bad.status, 422) << bad.body;
  EXPECT_EQ(bad.json().at("detail").at(0).at("loc"), json::parse(R"(["query","stream"])"));
}

TEST_F(LogsApi, AJobCannotReplaceItsLogsWithALinkToARootOnlyFile) {
  const auto secret = dir_.path() / "root-only";
  writeFile(secret, "TOPSECRET-0123\n", 0600);
  const auto go = outDir() / "swapped";
  // The job (as nobody, who cannot read the file) tries to replace its
  // stdout.log by a symlink to it: in its own directory, and in the control
  // directory named on its shim's command line. Neither changes the log.
  const std::string job = writeJob("swap.sh",
                                   "#!/bin/sh\n"
                                   "echo before\n"
                                   "for d in \"$PWD\" \"$(tr '\\0' '\\n' < /proc/$PPID/cmdline | sed -n 4p)\"; do\n"
                                   "  rm -f \"$d/stdout.log\" 2>/dev/null\n"
                                   "  ln -s " +
                                       secret.string() +
                                       " \"$d/stdout.log\" 2>/dev/null && echo linked \"$d\" >&2\n"
                                       "done\n"
                                       "touch " +
                                       go.string() +
                                       "\n"
                                       "exec sleep 600\n");
  submitWork("logs-3", {{job}});
  waitForFile(go);
  auto r = logs("logs-3", "logs-3-q0");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "before\n");
  EXPECT_EQ(r.body.find("TOPSECRET"), std::string::npos) << r.body;
  // It could only touch its own work dir.
  auto err = logs("logs-3", "logs-3-q0", "?stream=stderr");
  EXPECT_EQ(err.status, 200);
  EXPECT_NE(err.body.find("linked " + (dir_.path() / "state" / "workdirs").string()), std::string::npos) << err.body;
  EXPECT_EQ(err.body.find("/executions/"), std::string::npos) << err.body;
  ASSERT_EQ(call("POST", "/processes/logs-3/cancel", cancelBody("hard"), kOperateToken).status, 200);
  waitForStatus("logs-3", "cancelled");
}

}  // namespace
}  // namespace phonefarm::testing
