// HttpServer over real loopback sockets: the server runs in-process on an
// event loop of its own thread (the loop itself is tested in
// event_loop_test.cpp); a tiny raw-socket client (tests/support/test_socket.hpp) speaks
// HTTP/1.1 to it byte by byte so tests can send exactly what a broken or slow
// client would. Every wait has a deadline (poll(), future::wait_for); nothing
// sleeps to wait for state.
#include "agent/http/http_server.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/test_socket.hpp"
#include "tests/unit/running_server.hpp"

namespace phonefarm::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::RunningServer;
using testing::TestSocket;

std::string get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: test\r\n" + extra + "\r\n";
}

std::string post(const std::string& target, const std::string& body) {
  return "POST " + target +
         " HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

HttpResponse echo(const HttpRequest& req) {
  HttpResponse res;
  res.status = req.method == "POST" ? 201 : 200;
  res.body = R"({"method":")" + req.method + R"(","target":")" + req.target + R"(","body_len":)" +
             std::to_string(req.body.size()) + R"(,"has_body":)" + (req.has_body ? "true" : "false") + "}";
  res.log_principal = "tester";
  return res;
}

RequestHandler echoHandler() {
  return [](HttpRequest req, Responder respond) { respond(echo(req)); };
}

HttpServerOptions testOptions() { return test::testServerOptions(); }

// Holds Responders the handler did not answer yet, so a test decides when.
struct ParkedRequests {
  std::mutex mutex;
  std::vector<Responder> responders;
  std::promise<void> first_arrived;
  RequestHandler handler() {
    return [this](HttpRequest, Responder respond) {
      std::lock_guard lock(mutex);
      responders.push_back(std::move(respond));
      if (responders.size() == 1) first_arrived.set_value();
    };
  }
};

TEST(HttpServerTest, GetRoundtrip) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  auto res = client.roundtrip(get("/hello?x=1"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, R"({"method":"GET","target":"/hello?x=1","body_len":0,"has_body":false})");
  EXPECT_EQ(res->header("content-type"), "application/json; charset=utf-8");
  EXPECT_EQ(res->header("server"), "phonefarm-agent");
}

TEST(HttpServerTest, PostRoundtripPassesBody) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  auto res = client.roundtrip(post("/processes", R"({"a":1})"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 201);
  EXPECT_EQ(res->body, R"({"method":"POST","target":"/processes","body_len":7,"has_body":true})");
}

TEST(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  for (int i = 0; i < 2; ++i) {
    auto res = client.roundtrip(get("/n" + std::to_string(i)));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_NE(res->header("connection"), "close");
  }
  EXPECT_EQ(srv.server().stats().accepted, 1u);
  EXPECT_EQ(srv.server().stats().requests, 2u);
}

TEST(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(client.sendAll(get("/first") + post("/second", "xy") + get("/third")));
  for (const char* target : {"/first", "/second", "/third"}) {
    auto res = client.readResponse();
    ASSERT_TRUE(res);
    EXPECT_NE(res->body.find(std::string("\"target\":\"") + target + "\""), std::string::npos) << res->body;
  }
}

TEST(HttpServerTest, ConnectionCloseClosesAfterResponse) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  auto res = client.roundtrip(get("/", "Connection: close\r\n"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->header("connection"), "close");
  EXPECT_TRUE(client.waitClosed(2s));
}

TEST(HttpServerTest, Http10WithoutKeepAliveCloses) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  auto res = client.roundtrip("GET /old HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(client.waitClosed(2s));
}

TEST(HttpServerTest, ChunkedBodyOverLimitGets413) {
  RunningServer srv(testOptions(), echoHandler());  // max_body_bytes = 1024
  auto client = TestSocket::connectTo(srv.port());
  const std::string chunk(2048, 'a');
  auto res = client.roundtrip("POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + chunk +
                              "\r\n0\r\n\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(res->body, R"({"detail":"Request body too large"})");
  EXPECT_EQ(res->header("connection"), "close");
  EXPECT_TRUE(client.waitClosed(3s));
}

TEST(HttpServerTest, ContentLengthOverLimitGets413WithoutSendingBody) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  auto res = client.roundtrip("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(res->body, R"({"detail":"Request body too large"})");
  EXPECT_TRUE(client.waitClosed(3s));
  EXPECT_EQ(srv.server().stats().requests, 0u);
}

TEST(HttpServerTest, OversizedBodySentInFullStillReceives413) {
  // The server answers from the header alone while the client is still
  // uploading; the client must still get the 413 (the server drains instead of
  // resetting; on Linux loopback a reset would not lose it either, so this pins
  // the behaviour rather than the drain itself).
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  client.sendAll(post("/p", std::string(256 * 1024, 'b')));  // may fail once the server closes
  auto res = client.readResponse();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
}

TEST(HttpServerTest, ExpectContinueGets100BeforeTheBodyIsSent) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(client.sendAll("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = client.readResponse();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  auto res = client.roundtrip("abc");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 201);
  EXPECT_NE(res->body.find("\"body_len\":3"), std::string::npos);
}

TEST(HttpServerTest, MalformedRequestLineGets400) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  auto res = client.roundtrip("this is not http\r\n\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(res->body, R"({"detail":"Malformed HTTP request"})");
  EXPECT_TRUE(client.waitClosed(3s));
}

TEST(HttpServerTest, OversizedHeaderGets431) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  auto res = client.roundtrip(get("/", "X-Big: " + std::string(20000, 'h') + "\r\n"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 431);
}

// The header of a request after the first: header_timeout, from its first byte.
TEST(HttpServerTest, SlowHeaderClientIsDisconnectedAtHeaderTimeout) {
  auto options = testOptions();
  options.header_timeout = 300ms;
  options.idle_timeout = 10s;
  RunningServer srv(options, echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(client.roundtrip(get("/first")));
  const auto started = Clock::now();
  ASSERT_TRUE(client.sendAll("GET / HTTP/1.1\r\nHost: x\r\n"));
  EXPECT_FALSE(client.waitClosed(100ms));
  // Keep dribbling header bytes: activity must not extend the header deadline.
  bool closed = false;
  while (!closed && Clock::now() - started < 3s) {
    client.sendAll("X");
    closed = client.waitClosed(100ms);
  }
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  EXPECT_TRUE(closed);
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 3s);
  RecordProperty("slow_header_closed_after_ms", static_cast<int>(elapsed.count()));
}

// The first request: one deadline from the accept, whether the client stays
// silent for a while and then dribbles, or dribbles from the start; neither
// the silence (idle_timeout) nor the first byte (header_timeout) restarts it.
TEST(HttpServerTest, FirstRequestHeaderMustArriveWithinFirstRequestTimeoutOfTheAccept) {
  auto options = testOptions();
  options.first_request_timeout = 400ms;
  options.header_timeout = 10s;
  options.idle_timeout = 10s;
  RunningServer srv(options, echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  const auto started = Clock::now();
  EXPECT_FALSE(client.waitClosed(250ms));  // silent for most of it
  bool closed = !client.sendAll("GET / HTTP/1.1\r\n");
  while (!closed && Clock::now() - started < 5s) {
    closed = !client.sendAll("X") || client.waitClosed(50ms);
  }
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  EXPECT_TRUE(closed);
  EXPECT_GE(elapsed, 350ms);
  EXPECT_LT(elapsed, 2s);
  // A client that sends its first request in time is served.
  auto prompt = TestSocket::connectTo(srv.port());
  auto res = prompt.roundtrip(get("/"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(HttpServerTest, UnauthorizedAndForbiddenAnswersCloseTheConnection) {
  RunningServer srv(testOptions(), [](HttpRequest req, Responder respond) {
    HttpResponse res;
    res.status = req.target == "/401" ? 401 : req.target == "/403" ? 403 : 404;
    res.body = "{}";
    respond(std::move(res));
  });
  for (const char* target : {"/401", "/403"}) {
    auto client = TestSocket::connectTo(srv.port());
    auto res = client.roundtrip(get(target));
    ASSERT_TRUE(res) << target;
    EXPECT_EQ(res->header("connection"), "close") << target;
    EXPECT_TRUE(client.waitClosed(2s)) << target;
  }
  auto client = TestSocket::connectTo(srv.port());  // any other answer keeps the connection
  ASSERT_TRUE(client.roundtrip(get("/404")));
  EXPECT_FALSE(client.waitClosed(200ms));
}

TEST(HttpServerTest, IdleKeepAliveConnectionIsClosed) {
  auto options = testOptions();
  options.idle_timeout = 300ms;
  RunningServer srv(options, echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(client.roundtrip(get("/")));
  EXPECT_FALSE(client.waitClosed(100ms));
  EXPECT_TRUE(client.waitClosed(3s));
  EXPECT_EQ(srv.activeConnectionsSettled(0), 0u);
}

TEST(HttpServerTest, ConnectionCapRefusesANewConnectionWhenEveryOneHasARequestInFlight) {
  auto options = testOptions();
  options.max_connections = 2;
  ParkedRequests parked;
  RunningServer srv(options, parked.handler());
  auto first = TestSocket::connectTo(srv.port());
  auto second = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(first.sendAll(get("/1")));
  ASSERT_TRUE(second.sendAll(get("/2")));
  ASSERT_TRUE(srv.waitStats([](const HttpServerStats& s) { return s.requests == 2; }));
  auto third = TestSocket::connectTo(srv.port());
  EXPECT_TRUE(third.waitClosed(2s));
  EXPECT_EQ(srv.server().stats().rejected_over_cap, 1u);
  EXPECT_EQ(srv.server().stats().evicted_idle, 0u);
  {
    std::lock_guard lock(parked.mutex);
    for (auto& respond : parked.responders) respond(echo(HttpRequest{}));
  }
  auto again = first.readResponse();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  ASSERT_TRUE(second.readResponse());
  EXPECT_EQ(srv.server().stats().accepted, 2u);
}

// As nginx reuses keep-alive connections: a connection that never sent a
// byte is idle since its accept, a keep-alive one since its last response;
// the one idle longest goes.
TEST(HttpServerTest, AtTheCapTheConnectionIdleLongestMakesRoom) {
  auto options = testOptions();
  options.max_connections = 3;
  RunningServer srv(options, echoHandler());
  auto silent = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(srv.waitStats([](const HttpServerStats& s) { return s.accepted == 1; }));
  auto older = TestSocket::connectTo(srv.port());
  auto newer = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(older.roundtrip(get("/older")));
  ASSERT_TRUE(newer.roundtrip(get("/newer")));

  auto fourth = TestSocket::connectTo(srv.port());
  auto res = fourth.roundtrip(get("/fourth"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(silent.waitClosed(2s));
  EXPECT_EQ(srv.server().stats().evicted_idle, 1u);

  auto fifth = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(fifth.roundtrip(get("/fifth")));
  EXPECT_TRUE(older.waitClosed(2s));
  auto still = newer.roundtrip(get("/newer-again"));
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 200);
  EXPECT_EQ(srv.server().stats().evicted_idle, 2u);
  EXPECT_EQ(srv.server().stats().rejected_over_cap, 0u);
}

TEST(HttpServerTest, AcceptorSurvivesRunningOutOfDescriptors) {
  RunningServer srv(testOptions(), echoHandler());
  auto client = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(client.roundtrip(get("/warm")));
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  auto late = TestSocket::socketOnly();  // the client's fd exists before the limit drops
  // With the limit at the lowest free descriptor number, no new fd can be
  // created in this process: the server's accept() fails with EMFILE.
  const int lowest_free = ::dup(0);
  ::close(lowest_free);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  const bool connected = late.connectLater(srv.port());
  const bool sent = connected && late.sendAll(get("/late"));
  const bool served_while_exhausted = sent && late.readResponse(300ms).has_value();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_TRUE(sent);
  EXPECT_FALSE(served_while_exhausted);
  auto res = late.readResponse(5000ms);  // served once descriptors are available again
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(srv.server().stats().accepted, 2u);
}

TEST(HttpServerTest, ResponderMayAnswerFromAnotherThread) {
  std::mutex mutex;
  std::vector<std::thread> workers;
  RunningServer srv(testOptions(), [&](HttpRequest req, Responder respond) {
    std::lock_guard lock(mutex);
    workers.emplace_back([req = std::move(req), respond = std::move(respond)] {
      std::this_thread::sleep_for(50ms);  // simulated slow work, not a wait for state
      respond(echo(req));
    });
  });
  auto client = TestSocket::connectTo(srv.port());
  for (int i = 0; i < 3; ++i) {
    auto res = client.roundtrip(post("/slow", "abc"));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 201);
    EXPECT_NE(res->body.find("\"body_len\":3"), std::string::npos);
  }
  std::lock_guard lock(mutex);
  for (auto& t : workers) t.join();
}

TEST(HttpServerTest, DroppedResponderOrThrowingHandlerGives500) {
  RunningServer srv(testOptions(), [](HttpRequest req, Responder) {
    if (req.target == "/throw") throw std::runtime_error("boom");
    // "/drop": the Responder is destroyed unanswered.
  });
  auto client = TestSocket::connectTo(srv.port());
  for (const char* target : {"/drop", "/throw"}) {
    auto res = client.roundtrip(get(target));
    ASSERT_TRUE(res) << target;
    EXPECT_EQ(res->status, 500);
    EXPECT_EQ(res->body, R"({"detail":"Internal error"})");
  }
}

TEST(HttpServerTest, GracefulShutdownFinishesInFlightRequest) {
  ParkedRequests parked;
  RunningServer srv(testOptions(), parked.handler());
  auto busy = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(busy.sendAll(post("/processes", "{}")));
  ASSERT_EQ(parked.first_arrived.get_future().wait_for(5s), std::future_status::ready);
  // A kept-alive connection, idle after its answer.
  RunningServer other(testOptions(), echoHandler());
  auto idle = TestSocket::connectTo(other.port());
  ASSERT_TRUE(idle.roundtrip(get("/once")));
  other.server().beginShutdown();
  EXPECT_TRUE(idle.waitClosed(2s));  // no request in flight: closed at once
  EXPECT_TRUE(other.waitStopped(3s));

  srv.server().beginShutdown();
  srv.sync();  // the shutdown has been processed on the io thread
  int error = 0;
  EXPECT_FALSE(TestSocket::tryConnect(srv.port(), &error));
  EXPECT_EQ(error, ECONNREFUSED);
  EXPECT_FALSE(srv.waitStopped(100ms));

  HttpResponse answer;
  answer.status = 201;
  answer.body = R"({"ok":true})";
  {
    std::lock_guard lock(parked.mutex);
    parked.responders.front()(answer);
  }
  auto res = busy.readResponse();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 201);
  EXPECT_EQ(res->body, R"({"ok":true})");
  EXPECT_EQ(res->header("connection"), "close");
  EXPECT_TRUE(busy.waitClosed(2s));
  EXPECT_TRUE(srv.waitStopped(3s));
}

// A restart under socket activation: the client's connect completed, its
// request was not read yet when the shutdown began. It is answered, with
// Connection: close, instead of an empty reply.
TEST(HttpServerTest, AConnectionAcceptedBeforeTheShutdownStillGetsItsFirstRequestAnswered) {
  RunningServer srv(testOptions(), echoHandler());
  auto fresh = TestSocket::connectTo(srv.port());
  // Connections are accepted in order: once this one is answered, `fresh`
  // has its session (a connection still in the backlog would go with the
  // listener here; under socket activation systemd keeps those).
  auto used = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(used.roundtrip(get("/first")));
  srv.server().beginShutdown();
  srv.sync();
  EXPECT_TRUE(used.waitClosed(2s));  // kept alive, idle: closed at once
  ASSERT_TRUE(fresh.sendAll(get("/late")));
  auto res = fresh.readResponse();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->header("connection"), "close");
  EXPECT_TRUE(fresh.waitClosed(2s));
  EXPECT_TRUE(srv.waitStopped(3s));
}

TEST(HttpServerTest, ShutdownGraceForceClosesStuckRequests) {
  ParkedRequests parked;
  auto options = testOptions();
  options.shutdown_grace = 300ms;
  {
    RunningServer srv(options, parked.handler());
    auto client = TestSocket::connectTo(srv.port());
    ASSERT_TRUE(client.sendAll(get("/never")));
    ASSERT_EQ(parked.first_arrived.get_future().wait_for(5s), std::future_status::ready);
    const auto started = Clock::now();
    srv.server().beginShutdown();
    EXPECT_TRUE(srv.waitStopped(3s));
    EXPECT_GE(Clock::now() - started, 250ms);
    EXPECT_TRUE(client.waitClosed(1s));
  }
  // The server is gone; a late answer must be a harmless no-op.
  std::lock_guard lock(parked.mutex);
  parked.responders.front()(HttpResponse{});
}

TEST(HttpServerTest, HandlerRunsOnTheLoopThread) {
  std::promise<std::thread::id> handler_thread;
  RunningServer srv(testOptions(), [&](HttpRequest, Responder respond) {
    handler_thread.set_value(std::this_thread::get_id());
    respond(HttpResponse{});
  });
  auto client = TestSocket::connectTo(srv.port());
  ASSERT_TRUE(client.roundtrip(get("/")));
  const auto loop_thread = srv.onLoop([] { return std::this_thread::get_id(); });
  EXPECT_EQ(handler_thread.get_future().get(), loop_thread);
}

TEST(HttpServerTest, AccessLogLineHasPathWithoutQueryAndPrincipal) {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  {
    RunningServer srv(testOptions(), echoHandler());
    auto client = TestSocket::connectTo(srv.port());
    ASSERT_TRUE(client.roundtrip(post("/processes?token=secret", "{}")));
  }  // joins the io thread, so the log line has been written
  spdlog::set_default_logger(previous);
  const auto log = captured.str();
  EXPECT_NE(log.find("http.request method=POST path=/processes status=201 us="), std::string::npos) << log;
  EXPECT_NE(log.find("principal=tester"), std::string::npos) << log;
  EXPECT_EQ(log.find("secret"), std::string::npos) << log;
}

TEST(HttpServerTest, StartThrowsWhenPortIsTaken) {
  RunningServer srv(testOptions(), echoHandler());
  auto options = testOptions();
  options.port = srv.port();
  os::AsioEventLoop loop;
  HttpServer second(loop, options, echoHandler());
  EXPECT_THROW(second.start(), std::system_error);
}

}  // namespace
}  // namespace phonefarm::http
