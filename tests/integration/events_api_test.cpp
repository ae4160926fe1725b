// GET /events against the real agent: the SSE stream (order, resume by
// Last-Event-ID across a SIGKILL, filters, the overflow of a client that
// falls behind, the stream limit, heartbeats), the long-poll page, and that
// the events and the committed state agree both ways.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/json.hpp>
#include <set>
#include <thread>

#include "tests/integration/work_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

struct Frame {
  std::int64_t id = -1;
  std::string event;
  std::string data;
  json::object json() const { return json::parse(data).as_object(); }
};

// A raw SSE client: the request, the head, then frames one by one.
class SseClient {
 public:
  SseClient(std::uint16_t port, const std::string& query, const std::string& last_event_id = "", int rcvbuf = 0)
      : conn_(RawConnection::adopt(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0))) {
    if (rcvbuf > 0) ::setsockopt(conn_.fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(conn_.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::system_error(errno, std::generic_category(), "connect");
    }
    std::string req = "GET /events" + query + " HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer " + kReadToken +
                      "\r\nAccept: text/event-stream\r\n";
    if (!last_event_id.empty()) req += "Last-Event-ID: " + last_event_id + "\r\n";
    conn_.sendAll(req + "\r\n");
  }

  // The status of the answer (0: none within the timeout).
  int readHead(milliseconds timeout = seconds(10)) {
    const auto deadline = SteadyClock::now() + timeout;
    while (buf_.find("\r\n\r\n") == std::string::npos) {
      if (!fill(deadline)) return 0;
    }
    const auto end = buf_.find("\r\n\r\n");
    auto head = parseResponseHead(std::string_view(buf_).substr(0, end));
    buf_.erase(0, end + 4);
    if (!head) return 0;
    content_type_ = head->header("content-type");
    return head->status;
  }

  // The next frame (comments counted, not returned); nullopt at the deadline
  // or when the agent closed the stream (closed() tells which).
  std::optional<Frame> next(milliseconds timeout = seconds(10)) {
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
      const auto end = buf_.find("\n\n");
      if (end != std::string::npos) {
        const std::string block = buf_.substr(0, end);
        buf_.erase(0, end + 2);
        Frame f;
        bool comment_only = true;
        std::size_t pos = 0;
        while (pos <= block.size()) {
          auto nl = block.find('\n', pos);
          if (nl == std::string::npos) nl = block.size();
          const std::string line = block.substr(pos, nl - pos);
          pos = nl + 1;
          if (line.empty()) continue;
          if (line[0] == ':') {
            ++comments_;
            continue;
          }
          comment_only = false;
          const auto colon = line.find(": ");
          const std::string field = line.substr(0, colon);
          const std::string value = colon == std::string::npos ? "" : line.substr(colon + 2);
          if (field == "id") f.id = std::stoll(value);
          if (field == "event") f.event = value;
          if (field == "data") f.data = value;
        }
        if (comment_only || f.event.empty()) continue;  // a comment or the retry hint
        return f;
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }

  bool closed() const { return closed_; }
  int comments() const { return comments_; }
  const std::string& contentType() const { return content_type_; }
  void close() { conn_.close(); }

 private:
  bool fill(SteadyClock::time_point deadline) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0 || closed_) return false;
    switch (conn_.recvSome(buf_, left)) {
      case RawConnection::Recv::kData:
        return true;
      case RawConnection::Recv::kClosed:
        closed_ = true;
        return false;
      case RawConnection::Recv::kTimeout:
        return false;
    }
    return false;
  }

  RawConnection conn_;
  std::string buf_;
  std::string content_type_;
  bool closed_ = false;
  int comments_ = 0;
};

class EventsApiTest : public AgentFixture {
 protected:
  std::string extraConfig() const override { return "[http]\nmax_event_streams = 3\n" + eventsConfig(); }
  virtual std::string eventsConfig() const { return ""; }

  // Every event kept, through the long-poll pages.
  std::vector<json::object> allEvents(const std::string& filters = "") {
    std::vector<json::object> out;
    std::int64_t after = 0;
    for (;;) {
      auto r = call("GET", "/events?limit=1000&after=" + std::to_string(after) + filters, "", kReadToken);
      EXPECT_EQ(r.status, 200) << r.body;
      if (r.status != 200) return out;
      auto page = r.json().as_object();
      const auto& events = page.at("events").as_array();
      for (const auto& e : events) out.push_back(e.as_object());
      after = page.at("next").as_int64();
      if (events.empty()) return out;
    }
  }

  std::int64_t headSeq() {
    auto r = call("GET", "/events?wait=0", "", kReadToken);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json().as_object().at("next").as_int64();
  }

  // Reads frames until `n` events arrived (or the deadline).
  std::vector<Frame> readEvents(SseClient& c, std::size_t n, milliseconds timeout = seconds(20)) {
    std::vector<Frame> out;
    const auto deadline = SteadyClock::now() + timeout;
    while (out.size() < n) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
      if (left.count() <= 0) break;
      auto f = c.next(left);
      if (!f) break;
      out.push_back(*f);
    }
    return out;
  }

  double metric(const std::string& name) {
    auto r = call("GET", "/metrics", "", kReadToken);
    std::istringstream in(r.body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    return -1;
  }

  bool waitForMetric(const std::string& name, double value, milliseconds timeout = seconds(10)) {
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline) {
      if (metric(name) == value) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }
};

TEST_F(EventsApiTest, StreamDeliversEveryChangeInCommitOrderWithConsecutiveSeqs) {
  SseClient sse(port_, "?after=0");
  ASSERT_EQ(sse.readHead(), 200);
  EXPECT_EQ(sse.contentType(), "text/event-stream; charset=utf-8");
  submit("p-1");
  submit("p-2", 2);
  ASSERT_EQ(call("POST", "/processes/p-1/cancel", cancelBody("hard", 0), kOperateToken).status, 200);

  // p-1 submitted, p-2 submitted; the cancel: item.ended, process.status, cancel.accepted.
  const auto frames = readEvents(sse, 5);
  ASSERT_EQ(frames.size(), 5u);
  std::vector<std::string> kinds;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i].id, static_cast<std::int64_t>(i + 1));
    const auto e = frames[i].json();
    EXPECT_EQ(e.at("seq").as_int64(), frames[i].id);
    EXPECT_EQ(e.at("kind").as_string(), frames[i].event);
    kinds.push_back(frames[i].event);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"process.submitted", "process.submitted", "item.ended", "process.status",
                                             "cancel.accepted"}));
  EXPECT_EQ(frames[0].json().at("process_id").as_string(), "p-1");
  EXPECT_EQ(frames[0].json().at("phone_id").as_string(), "phone_01");
  EXPECT_EQ(frames[1].json().at("process_id").as_string(), "p-2");
  const auto ended = frames[2].json();
  EXPECT_EQ(ended.at("queue_item_id").as_string(), "p-1-q0");
  EXPECT_EQ(ended.at("payload").at("status").as_string(), "cancelled");
  const auto status = frames[3].json();
  EXPECT_EQ(status.at("payload").at("status").as_string(), "cancelled");
  EXPECT_EQ(status.at("payload").at("previous").as_string(), "queued");
  EXPECT_EQ(frames[4].json().at("payload").at("strategy").as_string(), "hard");
}

TEST_F(EventsApiTest, ResumesByLastEventIdAcrossAnAgentSigkillWithNoGapOrDuplicate) {
  std::vector<std::int64_t> seen;
  {
    SseClient sse(port_, "?after=0");
    ASSERT_EQ(sse.readHead(), 200);
    for (int i = 0; i < 5; ++i) submit("a-" + std::to_string(i));
    for (const auto& f : readEvents(sse, 3)) seen.push_back(f.id);  // the client reads only some of them
    ASSERT_EQ(seen.size(), 3u);
  }
  restartAgent(SIGKILL);
  for (int i = 0; i < 4; ++i) submit("b-" + std::to_string(i));
  const std::size_t total = allEvents().size();
  ASSERT_EQ(total, 9u);

  SseClient again(port_, "?after=0", std::to_string(seen.back()));  // Last-Event-ID wins over ?after=
  ASSERT_EQ(again.readHead(), 200);
  for (const auto& f : readEvents(again, total - seen.size())) seen.push_back(f.id);
  // Nothing more than the rest arrives.
  EXPECT_FALSE(again.next(milliseconds(300)));
  std::vector<std::int64_t> expected(total);
  for (std::size_t i = 0; i < total; ++i) expected[i] = static_cast<std::int64_t>(i + 1);
  EXPECT_EQ(seen, expected);
}

TEST_F(EventsApiTest, FiltersByProcessPhoneAndKind) {
  submit("f-1");
  submit("f-2", 1, "phone_02");
  ASSERT_EQ(call("POST", "/processes/f-2/cancel", cancelBody("hard", 0), kOperateToken).status, 200);

  auto ids = [](const std::vector<Frame>& frames) {
    std::vector<std::string> out;
    for (const auto& f : frames) out.push_back(f.event + ":" + std::string(f.json().at("process_id").as_string()));
    return out;
  };
  {
    SseClient sse(port_, "?after=0&process_id=f-2&kind=process.status,cancel.accepted");
    ASSERT_EQ(sse.readHead(), 200);
    EXPECT_EQ(ids(readEvents(sse, 2)), (std::vector<std::string>{"process.status:f-2", "cancel.accepted:f-2"}));
    EXPECT_FALSE(sse.next(milliseconds(300)));
  }
  {
    SseClient sse(port_, "?after=0&phone_id=phone_01");
    ASSERT_EQ(sse.readHead(), 200);
    EXPECT_EQ(ids(readEvents(sse, 1)), (std::vector<std::string>{"process.submitted:f-1"}));
    EXPECT_FALSE(sse.next(milliseconds(300)));
  }
  // Long poll, same filters.
  const auto page = allEvents("&phone_id=phone_02&kind=item.ended");
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].at("queue_item_id").as_string(), "f-2-q0");
  // Bad filters change nothing and say why.
  EXPECT_EQ(call("GET", "/events?kind=process.exploded", "", kReadToken).status, 422);
  EXPECT_EQ(call("GET", "/events?process_id=a%20b", "", kReadToken).status, 422);
  EXPECT_EQ(call("GET", "/events?wait=61", "", kReadToken).status, 422);
  EXPECT_EQ(call("GET", "/events?after=-1", "", kReadToken).status, 422);
  EXPECT_EQ(call("GET", "/events", "", nullptr).status, 401);
}

TEST_F(EventsApiTest, LongPollAnswersAtOnceWhenEventsWaitAndAfterTheWaitOtherwise) {
  const std::int64_t head = headSeq();
  submit("l-1");
  auto t0 = SteadyClock::now();
  auto r = call("GET", "/events?wait=10&after=" + std::to_string(head), "", kReadToken);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_LT(SteadyClock::now() - t0, seconds(2));
  auto page = r.json().as_object();
  ASSERT_EQ(page.at("events").as_array().size(), 1u);
  const std::int64_t next = page.at("next").as_int64();
  EXPECT_EQ(next, head + 1);

  // Nothing waits: the answer comes after the wait, empty, with the same next.
  t0 = SteadyClock::now();
  r = call("GET", "/events?wait=1&after=" + std::to_string(next), "", kReadToken);
  ASSERT_EQ(r.status, 200);
  EXPECT_GE(SteadyClock::now() - t0, milliseconds(900));
  EXPECT_EQ(r.json().as_object().at("events").as_array().size(), 0u);
  EXPECT_EQ(r.json().as_object().at("next").as_int64(), next);

  // An event committed while the poll waits ends it early.
  std::optional<Response> waited;
  std::thread poller([&] {
    HttpClient other("127.0.0.1", port_);
    other.setBearerToken(kReadToken);
    other.setTimeout(seconds(20));
    waited = other.get("/events?wait=10&after=" + std::to_string(next));
  });
  t0 = SteadyClock::now();
  submit("l-2");
  poller.join();
  EXPECT_LT(SteadyClock::now() - t0, seconds(5));
  ASSERT_TRUE(waited);
  ASSERT_EQ(waited->status, 200) << waited->body;
  const json::value body = waited->json();
  const auto& events = body.at("events").as_array();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("process_id").as_string(), "l-2");
}

TEST_F(EventsApiTest, StreamLimitRefusesOneMoreAndFreesTheSlotWhenAClientLeaves) {
  std::vector<std::unique_ptr<SseClient>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<SseClient>(port_, ""));
    ASSERT_EQ(open.back()->readHead(), 200);
  }
  ASSERT_TRUE(waitForMetric("phonefarm_event_streams", 3));
  SseClient extra(port_, "");
  EXPECT_EQ(extra.readHead(), 503);
  // The long poll is not a stream: it still answers.
  EXPECT_EQ(call("GET", "/events?wait=0", "", kReadToken).status, 200);
  open.front()->close();
  ASSERT_TRUE(waitForMetric("phonefarm_event_streams", 2));
  SseClient now(port_, "");
  EXPECT_EQ(now.readHead(), 200);
}

// A small per-stream buffer, so that a client that does not read overflows.
class EventsOverflowTest : public EventsApiTest {
 protected:
  std::string eventsConfig() const override { return "[events]\nstream_buffer = 64\n"; }

  // About 101 events per process: submitted, then 100 item.ended and more on cancel.
  void flood(int processes) {
    for (int i = 0; i < processes; ++i) {
      const std::string id = "o-" + std::to_string(i);
      submit(id, 100);
      ASSERT_EQ(call("POST", "/processes/" + id + "/cancel", cancelBody("hard", 0), kOperateToken).status, 200);
    }
  }
};

TEST_F(EventsOverflowTest, AClientThatDoesNotReadGetsOverflowWithTheSeqToResumeFromAndIsClosed) {
  SseClient slow(port_, "?after=0", "", 4096);
  ASSERT_EQ(slow.readHead(), 200);
  // While it does not read, the agent goes on: submits answer as usual.
  const auto t0 = SteadyClock::now();
  flood(100);
  EXPECT_LT(SteadyClock::now() - t0, seconds(60));
  const std::size_t total = allEvents().size();
  ASSERT_GT(total, 10000u);

  // Now it reads: consecutive events from 1, then the overflow, then the end.
  std::vector<Frame> frames;
  std::optional<Frame> overflow;
  while (auto f = slow.next(seconds(10))) {
    if (f->event == "overflow") {
      overflow = f;
      continue;
    }
    ASSERT_FALSE(overflow) << "an event after the overflow";
    frames.push_back(*f);
  }
  EXPECT_TRUE(slow.closed());
  ASSERT_TRUE(overflow);
  ASSERT_FALSE(frames.empty());
  EXPECT_LT(frames.size(), total);
  for (std::size_t i = 0; i < frames.size(); ++i) ASSERT_EQ(frames[i].id, static_cast<std::int64_t>(i + 1));
  const std::int64_t after = overflow->json().at("after").as_int64();
  EXPECT_EQ(after, frames.back().id);
  EXPECT_EQ(overflow->id, after);

  // Resuming from there gets the rest: nothing lost, nothing twice.
  SseClient resumed(port_, "", std::to_string(after));
  ASSERT_EQ(resumed.readHead(), 200);
  const auto rest = readEvents(resumed, total - frames.size(), seconds(30));
  ASSERT_EQ(rest.size(), total - frames.size());
  EXPECT_EQ(rest.front().id, after + 1);
  EXPECT_EQ(rest.back().id, static_cast<std::int64_t>(total));
  ASSERT_TRUE(waitForMetric("phonefarm_event_streams", 1));
}

// A short request_timeout: it bounds each write, never a stream that writes.
class EventsHeartbeatTest : public EventsApiTest {
 protected:
  std::string extraConfig() const override { return "[http]\nrequest_timeout_seconds = 1\nidle_timeout_seconds = 1\n"; }
};

TEST_F(EventsHeartbeatTest, AQuietStreamGetsHeartbeatsAndOutlivesTheRequestTimeout) {
  SseClient sse(port_, "");
  ASSERT_EQ(sse.readHead(), 200);
  const int greeting = [&] {
    (void)sse.next(milliseconds(500));  // reads the greeting comment, no event
    return sse.comments();
  }();
  // Nothing happens for longer than the 15 s heartbeat.
  EXPECT_FALSE(sse.next(seconds(16)));
  EXPECT_FALSE(sse.closed());
  EXPECT_GT(sse.comments(), greeting);
  submit("h-1");
  auto f = sse.next(seconds(5));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->event, "process.submitted");
}

// Retention keeps the newest 1000 events (the smallest max_events).
class EventsRetentionTest : public EventsApiTest {
 protected:
  std::string eventsConfig() const override { return "[events]\nmax_events = 1000\n"; }
};

TEST_F(EventsRetentionTest, AResumeFromADroppedSeqGetsResetWithTheOldestKept) {
  for (int i = 0; i < 11; ++i) {
    const std::string id = "r-" + std::to_string(i);
    submit(id, 100);
    ASSERT_EQ(call("POST", "/processes/" + id + "/cancel", cancelBody("hard", 0), kOperateToken).status, 200);
  }
  const std::int64_t head = headSeq();
  ASSERT_GT(head, 1000);
  // The retention round at start-up drops the oldest.
  restartAgent(SIGTERM);
  const std::int64_t oldest = head - 1000 + 1;
  const auto deadline = SteadyClock::now() + seconds(10);
  bool pruned = false;
  while (!pruned && SteadyClock::now() < deadline) {
    auto r = call("GET", "/events?after=0&limit=1", "", kReadToken);
    ASSERT_EQ(r.status, 200);
    const auto page = r.json().as_object();
    pruned = page.contains("reset") && page.at("reset").at("oldest").as_int64() == oldest;
    if (!pruned) std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_TRUE(pruned) << agent_->output();
  EXPECT_EQ(allEvents().size(), 1000u);

  SseClient sse(port_, "?after=5");
  ASSERT_EQ(sse.readHead(), 200);
  auto reset = sse.next();
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->event, "reset");
  EXPECT_EQ(reset->json().at("oldest").as_int64(), oldest);
  auto first = sse.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->id, oldest);
}

// Events and the committed state agree both ways, with real execution.
class EventsWorkTest : public WorkFixture {};

TEST_F(EventsWorkTest, EveryEventsChangeIsVisibleAndEveryChangeHasItsEvent) {
  const std::string ok = writeJob("ok.sh", "#!/bin/sh\nexit 0\n");
  const std::string fail = writeJob("fail.sh", "#!/bin/sh\nexit 3\n");
  submitWork("w-1", {{ok}, {fail}, {ok}});
  submitWork("w-2", {{ok}});
  waitForStatus("w-1", "failed");
  waitForStatus("w-2", "succeeded");

  std::vector<json::object> events;
  std::int64_t after = 0;
  for (;;) {
    auto r = call("GET", "/events?limit=1000&after=" + std::to_string(after), "", kReadToken);
    ASSERT_EQ(r.status, 200);
    auto page = r.json().as_object();
    for (const auto& e : page.at("events").as_array()) events.push_back(e.as_object());
    if (page.at("events").as_array().empty()) break;
    after = page.at("next").as_int64();
  }
  // Replaying the events gives the state GET shows.
  std::map<std::string, std::string> process_status;
  std::map<std::string, std::string> item_status;
  std::map<std::string, std::int64_t> exit_codes;
  for (const auto& e : events) {
    const std::string kind(e.at("kind").as_string());
    const auto& payload = e.at("payload").as_object();
    if (kind == "process.submitted" || kind == "process.status") {
      process_status[std::string(e.at("process_id").as_string())] = payload.at("status").as_string();
    } else if (kind == "item.started") {
      item_status[std::string(e.at("queue_item_id").as_string())] = "executing";
    } else if (kind == "item.ended") {
      const std::string item(e.at("queue_item_id").as_string());
      item_status[item] = payload.at("status").as_string();
      if (payload.at("exit_code").is_int64()) exit_codes[item] = payload.at("exit_code").as_int64();
    }
  }
  for (const char* id : {"w-1", "w-2"}) {
    const auto p = getProcess(id);
    EXPECT_EQ(process_status[id], p.at("status").as_string()) << id;
    for (const auto& iv : p.at("queue_items").as_array()) {
      const auto& item = iv.as_object();
      const std::string item_id(item.at("queue_item_id").as_string());
      EXPECT_EQ(item_status[item_id], item.at("status").as_string()) << item_id;
      if (item.at("exit_code").is_int64()) {
        EXPECT_EQ(exit_codes[item_id], item.at("exit_code").as_int64()) << item_id;
      }
    }
  }
  // Every transition has exactly one event: w-1 ran 2 items (the third was
  // skipped at the failure), w-2 one.
  std::map<std::string, int> count;
  for (const auto& e : events) ++count[std::string(e.at("kind").as_string())];
  EXPECT_EQ(count["process.submitted"], 2);
  EXPECT_EQ(count["item.started"], 3);
  EXPECT_EQ(count["item.ended"], 4);
  EXPECT_EQ(count["process.status"], 4);  // queued -> running -> failed / succeeded
}

// The kills and what follows them: a timeout's kill and a soft_then_force
// escalation are termination events, and the reset each asks for (no adb
// server here: every ladder fails) is reset.started, reset.step, reset.ended,
// then the phone's attention and health, each with its ids and payload.
class EventsKillsTest : public WorkFixture {
 protected:
  std::string resetConfig() const override {
    return "[reset]\non_forced_cancel = true\nadb_reconnect_timeout_seconds = 1\nusb_reset_timeout_seconds = 1\n";
  }

  std::vector<json::object> phoneEvents(const std::string& phone) {
    auto r = call("GET", "/events?limit=1000&after=0&phone_id=" + phone, "", kReadToken);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<json::object> out;
    if (r.status != 200) return out;
    const json::value page = r.json();
    for (const auto& e : page.at("events").as_array()) out.push_back(e.as_object());
    return out;
  }

  // The phone's events once its reset has ended and its health was stored.
  std::vector<json::object> eventsAfterTheReset(const std::string& phone) {
    const auto deadline = SteadyClock::now() + seconds(40);
    std::vector<json::object> events;
    while (SteadyClock::now() < deadline) {
      events = phoneEvents(phone);
      const bool health = std::any_of(events.begin(), events.end(),
                                      [](const json::object& e) { return e.at("kind") == "phone.health"; });
      if (health) return events;
      std::this_thread::sleep_for(milliseconds(50));
    }
    ADD_FAILURE() << "no phone.health for " << phone << "\n" << agent_->output();
    return events;
  }

  static const json::object* first(const std::vector<json::object>& events, const std::string& kind) {
    for (const auto& e : events) {
      if (e.at("kind") == kind.c_str()) return &e;
    }
    return nullptr;
  }
  static std::vector<const json::object*> all(const std::vector<json::object>& events, const std::string& kind) {
    std::vector<const json::object*> out;
    for (const auto& e : events) {
      if (e.at("kind") == kind.c_str()) out.push_back(&e);
    }
    return out;
  }

  // reset.started, three reset.step, reset.ended (failed), then the
  // attention and the health the failure leaves, in that order.
  static void expectAFailedReset(const std::vector<json::object>& events, const std::string& phone,
                                 const std::string& trigger) {
    const auto* started = first(events, "reset.started");
    ASSERT_NE(started, nullptr);
    const json::value reset_id = started->at("reset_id");
    ASSERT_TRUE(reset_id.is_string());
    EXPECT_EQ(started->at("phone_id"), phone.c_str());
    EXPECT_EQ(started->at("payload").at("trigger"), trigger.c_str());
    EXPECT_EQ(started->at("payload").at("status"), "pending");
    const auto steps = all(events, "reset.step");
    ASSERT_EQ(steps.size(), 3u);
    const char* names[] = {"adb_reconnect", "usb_reset", "hub_power_cycle"};
    for (std::size_t i = 0; i < steps.size(); ++i) {
      EXPECT_EQ(steps[i]->at("reset_id"), reset_id);
      EXPECT_EQ(steps[i]->at("phone_id"), phone.c_str());
      EXPECT_EQ(steps[i]->at("payload").at("index"), static_cast<std::int64_t>(i));
      EXPECT_EQ(steps[i]->at("payload").at("step"), names[i]);
      EXPECT_EQ(steps[i]->at("payload").at("trigger"), trigger.c_str());
      EXPECT_GT(steps[i]->at("seq").as_int64(), started->at("seq").as_int64());
    }
    const auto* ended = first(events, "reset.ended");
    ASSERT_NE(ended, nullptr);
    EXPECT_EQ(ended->at("reset_id"), reset_id);
    EXPECT_EQ(ended->at("payload"), (json::object{{"status", "failed"}, {"trigger", trigger}, {"steps", 3}}));
    EXPECT_GT(ended->at("seq").as_int64(), steps.back()->at("seq").as_int64());
    const auto* attention = first(events, "phone.attention");
    ASSERT_NE(attention, nullptr);
    EXPECT_EQ(attention->at("payload").at("reason"), "reset_failed");
    EXPECT_NE(std::string(attention->at("payload").at("detail").as_string()).find(std::string(reset_id.as_string())),
              std::string::npos);
    EXPECT_TRUE(attention->at("payload").at("previous").is_null());
    const auto* health = first(events, "phone.health");
    ASSERT_NE(health, nullptr);
    EXPECT_EQ(health->at("payload"),
              (json::object{{"health", "needs_attention"}, {"previous", "ready"}, {"reason", "reset_failed"}}));
    EXPECT_GT(health->at("seq").as_int64(), attention->at("seq").as_int64());
  }
};

TEST_F(EventsKillsTest, ATimeoutKillIsTerminationIssuedAndItsResetIsEvents) {
  submitWork("k-timeout", {{"/usr/bin/sleep", "600"}}, "phone_01", 1);
  waitForStatus("k-timeout", "failed");
  const auto events = eventsAfterTheReset("phone_01");
  const auto* issued = first(events, "termination.issued");
  ASSERT_NE(issued, nullptr) << agent_->output();
  EXPECT_EQ(issued->at("process_id"), "k-timeout");
  EXPECT_EQ(issued->at("queue_item_id"), "k-timeout-q0");
  EXPECT_EQ(issued->at("phone_id"), "phone_01");
  EXPECT_EQ(issued->at("payload"), (json::object{{"termination", "issued"}, {"cause", "timeout"}}));
  const auto* ended = first(events, "item.ended");
  ASSERT_NE(ended, nullptr);
  EXPECT_GT(ended->at("seq").as_int64(), issued->at("seq").as_int64());
  expectAFailedReset(events, "phone_01", "timeout");
}

TEST_F(EventsKillsTest, ASoftThenForceEscalationIsTerminationIssuedThenEscalated) {
  submitWork("k-force", {{stubbornJob(), (outDir() / "k-force").string()}}, "phone_02");
  waitForPid("k-force");
  auto r = call("POST", "/processes/k-force/cancel", cancelBody("soft_then_force", 1), kOperateToken);
  ASSERT_EQ(r.status, 200) << r.body;
  waitForStatus("k-force", "cancelled");
  const auto events = eventsAfterTheReset("phone_02");
  const auto* issued = first(events, "termination.issued");
  ASSERT_NE(issued, nullptr);
  EXPECT_EQ(issued->at("process_id"), "k-force");
  EXPECT_FALSE(issued->contains("queue_item_id"));  // the process's cancel (docs/api.md)
  EXPECT_EQ(issued->at("phone_id"), "phone_02");
  EXPECT_EQ(issued->at("payload"),
            (json::object{{"termination", "scheduled"}, {"strategy", "soft_then_force"}, {"cause", "cancel"}}));
  const auto* escalated = first(events, "termination.escalated");
  ASSERT_NE(escalated, nullptr) << agent_->output();
  EXPECT_EQ(escalated->at("process_id"), "k-force");
  EXPECT_EQ(escalated->at("queue_item_id"), "k-force-q0");
  EXPECT_EQ(escalated->at("phone_id"), "phone_02");
  EXPECT_EQ(escalated->at("payload").at("force_at"), r.json().at("termination").at("force_at"));
  EXPECT_GT(escalated->at("seq").as_int64(), issued->at("seq").as_int64());
  expectAFailedReset(events, "phone_02", "forced_cancel");
}

}  // namespace
}  // namespace phonefarm::testing
