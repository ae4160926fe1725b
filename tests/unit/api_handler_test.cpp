// ApiHandler as a function request -> response, without sockets: routing,
// the scope matrix, content types, and responses built from a real store in a
// temporary directory (store completions are marshalled through `post`, here a
// queue the test drains).
#include "agent/api/api_handler.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include "common/store/execution_repository.hpp"
#include "tests/fakes/fake_clock.hpp"

namespace phonefarm::api {
namespace {

namespace json = boost::json;

// Runs store completions on the test thread, like the io_context would.
class PostQueue {
 public:
  void post(std::function<void()> fn) {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(fn));
    cv_.notify_one();
  }
  // Runs queued functions until `done()` or the deadline.
  bool runUntil(const std::function<bool()>& done, std::chrono::seconds deadline = std::chrono::seconds(10)) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (!done()) {
      std::unique_lock lock(mutex_);
      if (!cv_.wait_until(lock, until, [this] { return !queue_.empty(); })) return false;
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fn();
    }
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
};

class ApiHandlerTest : public ::testing::Test {
 protected:
  ApiHandlerTest()
      : dir_(std::filesystem::temp_directory_path() / ("api-handler-" + std::to_string(::getpid()))),
        tokens_(TokenSet({{"r", Scope::kRead, sha256("read-token")},
                          {"o", Scope::kOperate, sha256("operate-token")},
                          {"s", Scope::kSchedule, sha256("schedule-token")}})) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "jobs");
    config_.phones.push_back(PhoneConfig{"phone_01", "serial-1", std::nullopt});
    config_.state_dir = dir_;        // GET .../logs reads dir_/executions/<execution_id>/
    config_.work.run_as = "nobody";  // the log files' owner
    // Submitted commands must exist under an allowed prefix.
    config_.work.allowed_command_prefixes = {(dir_ / "jobs/").string()};
    writeScript(dir_ / "jobs" / "x.sh");
    writeScript(dir_ / "jobs" / "y.sh");
    writeScript(dir_ / "outside.sh");
    submit_ = R"({"process_id":"p1","phone_id":"phone_01","account_id":"a","queue_items":[{"command":[")" +
              job("x.sh") + R"("]},{"command":[")" + job("y.sh") + R"("]}]})";
    store::StoreOptions options;
    options.path = dir_ / "agent.db";
    store_ = std::make_unique<store::Store>(options);
    cancels_ = std::make_unique<cancel::CancelService>(
        *store_, clock_, terminator_, [this](std::function<void()> fn) { posts_.post(std::move(fn)); }, "boot-1");
    handler_ = std::make_unique<ApiHandler>(
        ApiServices{config_, *store_, *cancels_, clock_, tokens_,
                    [this](std::function<void()> fn) { posts_.post(std::move(fn)); }, nullptr});
  }
  ~ApiHandlerTest() override {
    handler_.reset();
    cancels_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  static void writeScript(const std::filesystem::path& path) {
    std::ofstream(path) << "#!/bin/sh\nexit 0\n";
    std::filesystem::permissions(path, std::filesystem::perms(0755), std::filesystem::perm_options::replace);
  }
  std::string job(const std::string& name) const { return (dir_ / "jobs" / name).string(); }

  http::HttpResponse call(std::string method, std::string target, std::string body = "",
                          std::string token = "schedule-token", std::string content_type = "application/json") {
    http::HttpRequest req;
    req.method = std::move(method);
    req.target = std::move(target);
    if (!token.empty()) req.authorization = "Bearer " + token;
    req.has_body = !body.empty();
    if (req.has_body) req.content_type = std::move(content_type);
    req.body = std::move(body);
    std::optional<http::HttpResponse> response;
    handler_->handle(std::move(req), [&response](http::HttpResponse r) { response = std::move(r); });
    EXPECT_TRUE(posts_.runUntil([&response] { return response.has_value(); }));
    return response.value_or(http::HttpResponse{});
  }

  std::filesystem::path dir_;
  std::string submit_;  // p1 with two items, both allowed
  AgentConfig config_;
  FakeClock clock_;
  http::TokenRegistry tokens_;
  cancel::NoExecutorTerminator terminator_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<cancel::CancelService> cancels_;
  std::unique_ptr<ApiHandler> handler_;
  PostQueue posts_;
};

constexpr const char* kCancel = R"({"reason":"r","requested_by":{"u":1},"strategy":"hard"})";

TEST_F(ApiHandlerTest, ScopeMatrix) {
  struct Case {
    const char* method;
    const char* target;
    const char* body;
    const char* token;
    int status;
  };
  const char* submit = submit_.c_str();
  for (const Case& c :
       {Case{"GET", "/healthz", "", "", 200}, Case{"GET", "/readyz", "", "", 401},
        Case{"GET", "/readyz", "", "read-token", 200}, Case{"GET", "/processes", "", "nope", 401},
        Case{"POST", "/processes", submit, "read-token", 403}, Case{"POST", "/processes", submit, "operate-token", 403},
        Case{"POST", "/processes", submit, "schedule-token", 201},
        Case{"POST", "/processes/p1/cancel", kCancel, "read-token", 403},
        Case{"POST", "/cancel", "{}", "read-token", 403}, Case{"GET", "/processes/p1", "", "read-token", 200},
        Case{"POST", "/processes/p1/cancel", kCancel, "operate-token", 200}}) {
    EXPECT_EQ(call(c.method, c.target, c.body, c.token).status, c.status)
        << c.method << " " << c.target << " " << c.token;
  }
}

TEST_F(ApiHandlerTest, RoutingAndMethods) {
  EXPECT_EQ(call("GET", "/processes/").status, 404);
  EXPECT_EQ(call("GET", "/processes/p1/cancel/x").status, 404);
  // "/" is the rack page (ui_assets): public, as are its files.
  EXPECT_EQ(call("GET", "/", "", "").status, 200);
  EXPECT_EQ(call("GET", "/ui/app.js", "", "").status, 200);
  EXPECT_EQ(call("GET", "/ui/nope.js", "", "").status, 404);
  EXPECT_EQ(call("POST", "/", "{}", "").status, 405);
  auto r = call("PUT", "/processes/p1");
  EXPECT_EQ(r.status, 405);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Allow", "GET, HEAD"}));
  // HEAD is served wherever GET is (the socket layer drops the body).
  EXPECT_EQ(call("HEAD", "/healthz").status, 200);
  EXPECT_EQ(call("HEAD", "/processes/p1", "", "read-token").status, 404);
  EXPECT_EQ(call("HEAD", "/cancel").status, 405);
  // The path is percent-decoded once before routing; broken escapes are 400.
  EXPECT_EQ(call("GET", "/%68ealthz").status, 200);
  EXPECT_EQ(call("GET", "/processes/p%zz", "", "read-token").status, 400);
  EXPECT_EQ(call("GET", "/processes/p%00", "", "read-token").status, 400);
  EXPECT_EQ(call("GET", "/processes/p%2F1", "", "read-token").status, 404);
  // Ids outside the id alphabet cannot exist.
  auto bad_id = call("GET", "/processes/a%20b", "", "read-token");
  EXPECT_EQ(bad_id.status, 404);
  EXPECT_EQ(json::parse(bad_id.body), json::parse(R"({"detail":"Process not found"})"));
}

TEST_F(ApiHandlerTest, PreflightRefusesWhatHandleWouldBeforeTheBody) {
  auto preflight = [this](const std::string& method, const std::string& target, const std::string& token) {
    http::HttpRequest head;
    head.method = method;
    head.target = target;
    if (!token.empty()) head.authorization = "Bearer " + token;
    auto refusal = handler_->preflight(head);
    return refusal ? refusal->status : 0;
  };
  EXPECT_EQ(preflight("POST", "/processes", "schedule-token"), 0);
  EXPECT_EQ(preflight("POST", "/processes/p%3A1/cancel", "operate-token"), 0);
  EXPECT_EQ(preflight("POST", "/processes", "wrong"), 401);
  EXPECT_EQ(preflight("POST", "/processes", ""), 401);
  EXPECT_EQ(preflight("POST", "/processes", "read-token"), 403);
  EXPECT_EQ(preflight("POST", "/nowhere", "schedule-token"), 404);
  EXPECT_EQ(preflight("POST", "/healthz", "schedule-token"), 405);
  EXPECT_EQ(preflight("POST", "/processes/p%zz/cancel", "operate-token"), 400);
}

TEST_F(ApiHandlerTest, ContentTypes) {
  ASSERT_EQ(call("POST", "/processes", submit_).status, 201);
  EXPECT_EQ(call("POST", "/processes/p1/cancel", kCancel, "operate-token", "text/plain").status, 415);
  EXPECT_EQ(call("POST", "/processes/p1/cancel", kCancel, "operate-token", "application/x-www-form-urlencoded").status,
            415);
  // The 415 changed nothing: the first accepted cancel is still to come.
  EXPECT_EQ(call("POST", "/processes/p1/cancel", kCancel, "operate-token", "Application/JSON; charset=utf-8").status,
            200);
  EXPECT_EQ(call("POST", "/processes/p1/cancel", kCancel, "operate-token", "application/merge-patch+json").status, 200);
  // No Content-Type at all: parsed as JSON, as FastAPI does.
  EXPECT_EQ(call("POST", "/processes/p1/cancel", kCancel, "operate-token", "").status, 200);
}

TEST_F(ApiHandlerTest, CancelResponseUsesTheClockAndTheStoredProcess) {
  clock_.setWallMs(1'795'000'000'000);  // 2026-11-18T11:06:40.000Z
  ASSERT_EQ(call("POST", "/processes", submit_).status, 201);
  clock_.advanceMs(1234);
  auto r = call("POST", "/processes/p1/cancel", kCancel, "operate-token");
  ASSERT_EQ(r.status, 200) << r.body;
  auto body = json::parse(r.body).as_object();
  EXPECT_EQ(body.at("status"), "cancel_requested");
  EXPECT_EQ(body.at("cancelled_queue_item_ids").as_array().size(), 2u);
  EXPECT_EQ(body.at("termination").at("status"), "not_needed");
  const auto& p = body.at("process").as_object();
  EXPECT_EQ(p.at("created_at"), "2026-11-18T11:06:40.000Z");
  EXPECT_EQ(p.at("updated_at"), "2026-11-18T11:06:41.234Z");
  EXPECT_EQ(p.at("cancel").at("requested_at"), "2026-11-18T11:06:41.234Z");
  EXPECT_EQ(p.at("cancel").at("strategy"), "hard");
  EXPECT_EQ(p.at("queue_items").at(1).at("ended_at"), "2026-11-18T11:06:41.234Z");
}

TEST_F(ApiHandlerTest, CorruptStoredRowIs500WithAnErrorId) {
  ASSERT_EQ(call("POST", "/processes", submit_).status, 201);
  std::promise<void> corrupted;
  store_->submit<int>(
      [](store::Db& db) {
        db.exec("UPDATE queue_items SET command = '{oops' WHERE process_id = 'p1'");
        return 0;
      },
      [&corrupted](Result<int>) { corrupted.set_value(); });
  ASSERT_EQ(corrupted.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto r = call("GET", "/processes/p1", "", "read-token");
  EXPECT_EQ(r.status, 500);
  auto body = json::parse(r.body).as_object();
  EXPECT_EQ(body.at("detail"), "Internal error");
  EXPECT_EQ(body.at("error_id").as_string().size(), 36u);
  EXPECT_EQ(r.body.find("oops"), std::string::npos);
}

TEST_F(ApiHandlerTest, CommandOutsideTheAllowedPrefixesIs422AndStoresNothing) {
  const std::string body = R"({"process_id":"p2","phone_id":"phone_01","account_id":"a","queue_items":[)"
                           R"({"command":[")" +
                           job("x.sh") +
                           R"("]},)"
                           R"({"command":[")" +
                           (dir_ / "outside.sh").string() +
                           R"(","--x"]},)"
                           R"({"command":[")" +
                           job("missing.sh") + R"("]}]})";
  auto r = call("POST", "/processes", body);
  ASSERT_EQ(r.status, 422) << r.body;
  const auto detail = json::parse(r.body).at("detail").as_array();
  ASSERT_EQ(detail.size(), 2u) << r.body;
  EXPECT_EQ(detail[0].at("loc"), json::parse(R"(["body","queue_items",1,"command",0])"));
  EXPECT_EQ(detail[0].at("type"), "value_error");
  const std::string outside = std::filesystem::canonical(dir_ / "outside.sh").string();
  EXPECT_EQ(std::string(detail[0].at("msg").as_string()),
            "Value error, command " + (dir_ / "outside.sh").string() + " resolves to " + outside +
                ", which is not under an allowed prefix (" + job("") + ")");
  EXPECT_EQ(detail[1].at("loc"), json::parse(R"(["body","queue_items",2,"command",0])"));
  EXPECT_EQ(detail[1].at("type"), "value_error");
  EXPECT_EQ(std::string(detail[1].at("msg").as_string()),
            "Value error, command not found: " + job("missing.sh") + " (No such file or directory)");
  // Nothing was stored: neither the process nor its allowed first item.
  EXPECT_EQ(call("GET", "/processes/p2", "", "read-token").status, 404);
  auto list = call("GET", "/processes", "", "read-token");
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(json::parse(list.body).at("processes").as_array().empty()) << list.body;
}

TEST_F(ApiHandlerTest, AccessLogPrincipalIsTheTokenName) {
  EXPECT_EQ(call("GET", "/processes", "", "read-token").log_principal, "r");
  EXPECT_EQ(call("GET", "/healthz", "", "").log_principal, "");
}

TEST_F(ApiHandlerTest, MetricsCountRequestsByRouteTemplateAndCancels) {
  // The daemon's pulled metrics arrive through `collect`, at scrape time.
  int collected = 0;
  ApiServices services{config_, *store_, *cancels_,
                       clock_,  tokens_, [this](std::function<void()> fn) { posts_.post(std::move(fn)); },
                       nullptr};
  services.collect = [&collected](metrics::Registry& r) {
    r.gauge("phonefarm_test_pulled", "Pulled at scrape time.").set(++collected);
  };
  handler_ = std::make_unique<ApiHandler>(std::move(services));

  ASSERT_EQ(call("POST", "/processes", submit_).status, 201);
  ASSERT_EQ(call("POST", "/processes/p1/cancel", kCancel, "operate-token").status, 200);
  ASSERT_EQ(call("GET", "/processes/nope", "", "read-token").status, 404);
  EXPECT_EQ(call("GET", "/metrics", "", "").status, 401);
  EXPECT_EQ(call("POST", "/metrics", "{}", "read-token").status, 405);
  EXPECT_EQ(collected, 0);

  const auto r = call("GET", "/metrics", "", "read-token");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.content_type.starts_with("text/plain; version=0.0.4")) << r.content_type;
  EXPECT_EQ(collected, 1);
  auto has = [&r](const std::string& line) { return r.body.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has(R"(phonefarm_http_requests_total{route="/processes",method="POST",status="201"} 1)")) << r.body;
  // Route templates, not raw paths: no process id in any label.
  EXPECT_TRUE(
      has(R"(phonefarm_http_requests_total{route="/processes/{process_id}/cancel",method="POST",status="200"} 1)"))
      << r.body;
  EXPECT_TRUE(has(R"(phonefarm_http_requests_total{route="/processes/{process_id}",method="GET",status="404"} 1)"))
      << r.body;
  EXPECT_TRUE(has(R"(phonefarm_http_requests_total{route="/metrics",method="GET",status="401"} 1)")) << r.body;
  EXPECT_EQ(r.body.find("p1"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("nope"), std::string::npos) << r.body;
  EXPECT_TRUE(has(R"(phonefarm_cancels_total{strategy="hard",outcome="cancel_requested"} 1)")) << r.body;
  EXPECT_TRUE(has(R"(phonefarm_http_request_duration_seconds_count{route="/processes",method="POST"} 1)")) << r.body;
  EXPECT_TRUE(has("# TYPE phonefarm_http_request_duration_seconds histogram")) << r.body;
  EXPECT_TRUE(has("phonefarm_test_pulled 1")) << r.body;

  // A second cancel of the now-terminal process is ignored, and counted so.
  ASSERT_EQ(call("POST", "/processes/p1/cancel", kCancel, "operate-token").status, 200);
  const auto again = call("GET", "/metrics", "", "read-token");
  EXPECT_NE(again.body.find(R"(phonefarm_cancels_total{strategy="hard",outcome="ignored_terminal"} 1)"),
            std::string::npos)
      << again.body;
  EXPECT_NE(again.body.find(R"(phonefarm_http_requests_total{route="/metrics",method="GET",status="200"} 1)"),
            std::string::npos)
      << again.body;
}

// ---------------------------------------------------------------- GET .../logs

class LogsApiTest : public ApiHandlerTest {
 protected:
  void SetUp() override {
    const std::string body = R"({"process_id":"p1","phone_id":"phone_01","account_id":"a","queue_items":[)"
                             R"({"queue_item_id":"p1-a","command":[")" +
                             job("x.sh") + R"("]},{"queue_item_id":"p1-b","command":[")" + job("y.sh") + R"("]}]})";
    ASSERT_EQ(call("POST", "/processes", body).status, 201);
    // p1-a executing as execution e1, as the executor would have stored it.
    sql("UPDATE queue_items SET status = 'executing', started_at = 1 WHERE queue_item_id = 'p1-a'");
    store::ExecutionRow row;
    row.execution_id = "e1";
    row.queue_item_id = "p1-a";
    row.runtime = "cgroup";
    row.started_at = 1;
    run([row](store::Db& db) { store::ExecutionRepository(db).insertExecution(row); });
    std::filesystem::create_directories(execDir());
    writeLog("stdout.log", "line one\nline two\n");
  }

  void run(std::function<void(store::Db&)> fn) {
    std::promise<void> done;
    store_->submit<int>(
        [fn](store::Db& db) {
          fn(db);
          return 0;
        },
        [&done](Result<int> r) {
          EXPECT_TRUE(r.ok());
          done.set_value();
        });
    ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  }
  void sql(const std::string& statement) {
    run([statement](store::Db& db) { db.exec(statement); });
  }

  std::filesystem::path execDir() const { return dir_ / "executions" / "e1"; }
  // Owned by run_as (nobody), as shims before the control/work split wrote
  // them; the agent's own uid (the shim's now) is accepted as well.
  void writeLog(const std::string& name, const std::string& content) const {
    std::ofstream(execDir() / name, std::ios::binary | std::ios::trunc) << content;
    EXPECT_EQ(::chown((execDir() / name).c_str(), kNobody, kNobody), 0) << "the unit tests run as root";
  }
  static constexpr uid_t kNobody = 65534;

  http::HttpResponse logs(const std::string& query = "", const std::string& item = "p1-a",
                          const std::string& token = "read-token") {
    return call("GET", "/processes/p1/items/" + item + "/logs" + query, "", token);
  }

  static std::string header(const http::HttpResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return "<absent>";
  }
};

TEST_F(LogsApiTest, ReadsFromAnOffsetAndSaysWhereToGoOn) {
  auto r = logs();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(r.body, "line one\nline two\n");
  EXPECT_EQ(header(r, "X-Phonefarm-Next-Offset"), "18");
  EXPECT_EQ(header(r, "X-Phonefarm-Log-Size"), "18");
  EXPECT_EQ(header(r, "X-Phonefarm-Item-Status"), "executing");
  EXPECT_EQ(header(r, "X-Phonefarm-More"), "true");  // still executing
  EXPECT_EQ(header(r, "X-Phonefarm-Execution-Id"), "e1");

  auto tail = logs("?offset=9&stream=stdout");
  ASSERT_EQ(tail.status, 200) << tail.body;
  EXPECT_EQ(tail.body, "line two\n");
  EXPECT_EQ(header(tail, "X-Phonefarm-Next-Offset"), "18");

  auto past = logs("?offset=100");
  ASSERT_EQ(past.status, 200) << past.body;
  EXPECT_EQ(past.body, "");
  EXPECT_EQ(header(past, "X-Phonefarm-Next-Offset"), "100");

  // Not written yet: empty, and more may come.
  auto err = logs("?stream=stderr");
  ASSERT_EQ(err.status, 200) << err.body;
  EXPECT_EQ(err.body, "");
  EXPECT_EQ(header(err, "X-Phonefarm-Log-Size"), "0");
  EXPECT_EQ(header(err, "X-Phonefarm-More"), "true");
  writeLog("stderr.log", "oops\n");
  EXPECT_EQ(logs("?stream=stderr").body, "oops\n");

  // Once the item has ended, nothing more comes after the last byte.
  sql("UPDATE queue_items SET status = 'succeeded', ended_at = 2 WHERE queue_item_id = 'p1-a'");
  auto ended = logs("?offset=9");
  EXPECT_EQ(ended.body, "line two\n");
  EXPECT_EQ(header(ended, "X-Phonefarm-Item-Status"), "succeeded");
  EXPECT_EQ(header(ended, "X-Phonefarm-More"), "false");
}

TEST_F(LogsApiTest, AnswersAreCappedAtOneMebibyte) {
  writeLog("stdout.log", std::string(1024 * 1024 + 10, 'x'));
  sql("UPDATE queue_items SET status = 'failed', ended_at = 2 WHERE queue_item_id = 'p1-a'");
  auto first = logs();
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.body.size(), 1024u * 1024u);
  EXPECT_EQ(header(first, "X-Phonefarm-Next-Offset"), "1048576");
  EXPECT_EQ(header(first, "X-Phonefarm-More"), "true");  // ended, but 10 bytes are left
  auto second = logs("?offset=1048576");
  EXPECT_EQ(second.body, std::string(10, 'x'));
  EXPECT_EQ(header(second, "X-Phonefarm-More"), "false");
}

TEST_F(LogsApiTest, AnItemThatNeverRanIsEmpty) {
  auto r = logs("", "p1-b");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(header(r, "X-Phonefarm-Item-Status"), "pending");
  EXPECT_EQ(header(r, "X-Phonefarm-More"), "true");
  EXPECT_EQ(header(r, "X-Phonefarm-Execution-Id"), "<absent>");
  sql("UPDATE queue_items SET status = 'skipped' WHERE queue_item_id = 'p1-b'");
  EXPECT_EQ(header(logs("", "p1-b"), "X-Phonefarm-More"), "false");
}

TEST_F(LogsApiTest, UnknownProcessOrItemIs404) {
  auto no_process = call("GET", "/processes/nope/items/p1-a/logs", "", "read-token");
  EXPECT_EQ(no_process.status, 404);
  EXPECT_EQ(json::parse(no_process.body), json::parse(R"({"detail":"Process not found"})"));
  auto no_item = logs("", "nope");
  EXPECT_EQ(no_item.status, 404);
  EXPECT_EQ(json::parse(no_item.body), json::parse(R"({"detail":"Queue item not found"})"));
  // An item of another process is not this process's item.
  const std::string other = R"({"process_id":"p2","phone_id":"phone_01","account_id":"a","queue_items":[)"
                            R"({"queue_item_id":"p2-a","command":[")" +
                            job("x.sh") + R"("]}]})";
  ASSERT_EQ(call("POST", "/processes", other).status, 201);
  EXPECT_EQ(logs("", "p2-a").status, 404);
  EXPECT_EQ(call("GET", "/processes/p1/items//logs", "", "read-token").status, 404);
  EXPECT_EQ(call("GET", "/processes/p1/items/p1-a/logs/x", "", "read-token").status, 404);
  EXPECT_EQ(call("POST", "/processes/p1/items/p1-a/logs", "{}", "schedule-token").status, 405);
  EXPECT_EQ(logs("", "p1-a", "").status, 401);
}

TEST_F(LogsApiTest, QueryParametersAreValidated) {
  auto r = logs("?stream=stdin&offset=-1");
  ASSERT_EQ(r.status, 422) << r.body;
  const auto detail = json::parse(r.body).at("detail").as_array();
  ASSERT_EQ(detail.size(), 2u) << r.body;
  EXPECT_EQ(detail[0].at("loc"), json::parse(R"(["query","stream"])"));
  EXPECT_EQ(detail[0].at("type"), "literal_error");
  EXPECT_EQ(detail[1].at("loc"), json::parse(R"(["query","offset"])"));
  EXPECT_EQ(detail[1].at("type"), "greater_than_equal");
  for (const char* bad : {"?offset=", "?offset=1x", "?offset=99999999999999999999", "?offset=%3"}) {
    auto b = logs(bad);
    EXPECT_EQ(b.status, 422) << bad << " " << b.body;
    const char* type = std::string_view(bad) == "?offset=%3" ? "value_error" : "int_parsing";
    EXPECT_NE(b.body.find(type), std::string::npos) << bad << " " << b.body;
  }
  // Values are percent-decoded like GET /processes's ("%31" is "1").
  EXPECT_EQ(logs("?offset=%31&stream=std%6Fut").status, 200);
}

TEST_F(LogsApiTest, ASymlinkPlantedByTheJobIsNotFollowed) {
  const auto secret = dir_ / "secret";
  std::ofstream(secret) << "TOPSECRET\n";
  std::filesystem::permissions(secret, std::filesystem::perms(0600), std::filesystem::perm_options::replace);
  std::filesystem::remove(execDir() / "stdout.log");
  std::filesystem::create_symlink(secret, execDir() / "stdout.log");
  auto r = logs();
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.body.find("TOPSECRET"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("symbolic link"), std::string::npos) << r.body;

  // The execution directory itself replaced by a symlink to a directory.
  std::filesystem::remove_all(execDir());
  std::filesystem::create_directories(dir_ / "elsewhere");
  std::ofstream(dir_ / "elsewhere" / "stdout.log") << "TOPSECRET\n";
  std::filesystem::create_directory_symlink(dir_ / "elsewhere", execDir());
  auto d = logs();
  EXPECT_EQ(d.status, 409) << d.body;
  EXPECT_EQ(d.body.find("TOPSECRET"), std::string::npos) << d.body;
}

TEST_F(LogsApiTest, AFifoOrAForeignFileIsRefusedWithoutBlocking) {
  std::filesystem::remove(execDir() / "stdout.log");
  ASSERT_EQ(::mkfifo((execDir() / "stdout.log").c_str(), 0644), 0);
  auto fifo = logs();  // O_NONBLOCK: a FIFO without a writer would block a plain open
  EXPECT_EQ(fifo.status, 409) << fifo.body;
  EXPECT_NE(fifo.body.find("not a regular file"), std::string::npos) << fifo.body;

  // A file owned by neither the agent nor the work user (a hard link to
  // another user's file looks like this).
  writeLog("stderr.log", "TOPSECRET\n");
  ASSERT_EQ(::chown((execDir() / "stderr.log").c_str(), 4242, 4242), 0);
  auto foreign = logs("?stream=stderr");
  EXPECT_EQ(foreign.status, 409) << foreign.body;
  EXPECT_EQ(foreign.body.find("TOPSECRET"), std::string::npos) << foreign.body;
}

// ---------------------------------------------------------------- GET /debug

TEST_F(ApiHandlerTest, DebugNeedsOperateAndHoldsNoSecret) {
  // A cgroup tree as cgroupfs shows it: one leaf with two pids.
  const auto cg = dir_ / "cg" / "phonefarm-work";
  std::filesystem::create_directories(cg / "exec-1");
  std::ofstream(cg / "exec-1" / "cgroup.procs") << "101\n102\n";
  std::ofstream(cg / "exec-1" / "cgroup.events") << "populated 1\nfrozen 0\n";
  config_.tokens_file = dir_ / "tokens";
  std::ofstream(config_.tokens_file) << "o operate operate-token\n";
  config_.heal.after = std::chrono::seconds(7);
  int probes = 0;
  ApiServices services{config_,
                       *store_,
                       *cancels_,
                       clock_,
                       tokens_,
                       [this](std::function<void()> fn) { posts_.post(std::move(fn)); },
                       [&cg] {
                         return json::object{{"work", json::object{{"runtime", "cgroup"}, {"cgroup", cg.string()}}}};
                       }};
  services.adb_probe = [&probes](std::function<void(json::object)> done) {
    ++probes;
    done(json::object{{"server", "127.0.0.1:5037"}, {"up", false}, {"error", "adb server not running"}});
  };
  handler_ = std::make_unique<ApiHandler>(std::move(services));

  EXPECT_EQ(call("GET", "/debug", "", "").status, 401);
  EXPECT_EQ(call("GET", "/debug", "", "read-token").status, 403);
  EXPECT_EQ(probes, 0);
  clock_.advanceMs(61'000);
  auto r = call("GET", "/debug", "", "operate-token");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(probes, 1);
  for (const char* secret : {"read-token", "operate-token", "schedule-token"}) {
    EXPECT_EQ(r.body.find(secret), std::string::npos) << secret << " in " << r.body;
  }
  const auto body = json::parse(r.body).as_object();
  EXPECT_EQ(body.at("agent").at("version"), PHONEFARM_VERSION);
  EXPECT_EQ(body.at("agent").at("pid"), static_cast<std::int64_t>(::getpid()));
  EXPECT_EQ(body.at("agent").at("uptime_seconds"), 61);
  EXPECT_EQ(body.at("config").at("tokens_file"), config_.tokens_file.c_str());
  EXPECT_EQ(body.at("config").at("phones").at(0).at("serial"), "serial-1");
  EXPECT_EQ(body.at("config").at("heal"), json::parse(R"({"enabled":true,"after_seconds":7,"backoff_max_seconds":1800,
      "probe_interval_seconds":300,"flap_count":3,"flap_window_seconds":600,"hub_window_seconds":10})"))
      << r.body;
  EXPECT_EQ(body.at("readiness").at("store"), "ok");
  EXPECT_EQ(body.at("adb").at("error"), "adb server not running");
  const auto& leaf = body.at("work").at("tree").at("leaves").at(0);
  EXPECT_EQ(leaf.at("name"), "exec-1");
  EXPECT_EQ(leaf.at("pids"), json::parse("[101,102]"));
  EXPECT_EQ(leaf.at("events").at("populated"), 1);
  // The request counters, summarized: the 403 above is there.
  EXPECT_EQ(body.at("metrics").at(R"(phonefarm_http_requests_total{route="/debug",method="GET",status="403"})"), 1.0)
      << r.body;
}

}  // namespace
}  // namespace phonefarm::api
