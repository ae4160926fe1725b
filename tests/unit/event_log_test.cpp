// Unit tests for the event log (docs/api.md "GET /events") on a real store:
// the events the phone and execution repositories append with their changes
// (phone.state, phone.health with its reason, phone.attention, reset.started,
// reset.recorded, reset.step, reset.ended, a timeout's termination.issued),
// and EventRetention dropping what is older than [events] retention_days
// (a FakeClock and a FakeLoop; rows seeded with old times).
#include "common/store/event_log.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/json.hpp>
#include <filesystem>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "common/store/event_retention.hpp"
#include "common/store/execution_repository.hpp"
#include "common/store/phone_repository.hpp"
#include "common/store/process_repository.hpp"
#include "common/store/store.hpp"
#include "tests/fakes/fake_clock.hpp"
#include "tests/fakes/fake_loop.hpp"

namespace phonefarm::store {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

template <class T>
T runSync(Store& store, std::function<T(Db&)> work) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  auto future = promise->get_future();
  store.submit<T>(std::move(work), [promise](Result<T> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(10s) != std::future_status::ready) throw std::runtime_error("store job timed out");
  auto r = future.get();
  if (!r) throw std::runtime_error("store job failed: " + r.error().message);
  return std::move(*r);
}

void run(Store& store, std::function<void(Db&)> work) {
  runSync<Unit>(store, [work = std::move(work)](Db& db) {
    work(db);
    return Unit{};
  });
}

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = (std::filesystem::temp_directory_path() / "event_log_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    StoreOptions o;
    o.path = dir_ / "agent.db";
    store_ = std::make_unique<Store>(o);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // The events after `after`, in seq order.
  std::vector<Event> events(std::int64_t after = 0) {
    return runSync<std::vector<Event>>(
        *store_, [after](Db& db) { return EventLog(db).readAfter(after, INT64_MAX, {}, 10000, 10000).events; });
  }
  std::int64_t head() {
    return runSync<std::int64_t>(*store_, [](Db& db) { return EventLog(db).lastSeq(); });
  }
  static json::object payload(const Event& e) { return json::parse(e.payload).as_object(); }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(EventLogTest, PhoneStateAndAttentionChangesAreEventsAndRepeatsAreNot) {
  run(*store_, [](Db& db) {
    PhoneRepository repo(db);
    repo.recordAdbState("phone_01", "A", std::nullopt, "device", 1000);
    repo.recordAdbState("phone_01", "A", std::nullopt, "device", 1001);  // no change
    repo.recordAdbState("phone_01", "A", std::nullopt, "offline", 1002);
    repo.recordAttention("phone_01", "A", std::nullopt, StoredAttention{"flapping", "dropped 3 times", 1003}, 1003);
    repo.recordAttention("phone_01", "A", std::nullopt, StoredAttention{"flapping", "dropped 3 times", 1003}, 1004);
    repo.recordAttention("phone_01", "A", std::nullopt, std::nullopt, 1005);
    repo.recordAttention("phone_01", "A", std::nullopt, std::nullopt, 1006);  // nothing to clear
  });
  const auto e = events();
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].kind, "phone.state");
  EXPECT_EQ(e[0].ids.phone_id, "phone_01");
  EXPECT_EQ(payload(e[0]), (json::object{{"adb_state", "device"}, {"previous", nullptr}}));
  EXPECT_EQ(e[1].kind, "phone.state");
  EXPECT_EQ(payload(e[1]), (json::object{{"adb_state", "offline"}, {"previous", "device"}}));
  EXPECT_EQ(e[2].kind, "phone.attention");
  EXPECT_EQ(e[2].ids.phone_id, "phone_01");
  EXPECT_FALSE(e[2].ids.process_id);
  EXPECT_EQ(e[2].time, 1003);
  EXPECT_EQ(payload(e[2]),
            (json::object{{"reason", "flapping"}, {"detail", "dropped 3 times"}, {"previous", nullptr}}));
  EXPECT_EQ(e[3].kind, "phone.attention");
  EXPECT_EQ(payload(e[3]), (json::object{{"reason", nullptr}, {"detail", nullptr}, {"previous", "flapping"}}));
}

TEST_F(EventLogTest, PhoneHealthNeedsAttentionCarriesTheStoredReason) {
  run(*store_, [](Db& db) {
    PhoneRepository repo(db);
    repo.upsertPhone("phone_01", "A", std::nullopt, "ready", 1000);  // the default: no change
    repo.recordAttention("phone_01", "A", std::nullopt, StoredAttention{"reset_failed", "reset r-1 failed", 1001},
                         1001);
    repo.upsertPhone("phone_01", "A", std::nullopt, "needs_attention", 1002);
    repo.recordAttention("phone_01", "A", std::nullopt, std::nullopt, 1003);
    repo.upsertPhone("phone_01", "A", std::nullopt, "ready", 1004);
  });
  std::vector<Event> health;
  for (auto& e : events()) {
    if (e.kind == "phone.health") health.push_back(e);
  }
  ASSERT_EQ(health.size(), 2u);
  EXPECT_EQ(health[0].ids.phone_id, "phone_01");
  EXPECT_EQ(payload(health[0]),
            (json::object{{"health", "needs_attention"}, {"previous", "ready"}, {"reason", "reset_failed"}}));
  EXPECT_EQ(payload(health[1]), (json::object{{"health", "ready"}, {"previous", "needs_attention"}}));
}

TEST_F(EventLogTest, AResetsLifeIsStartedStepsAndEndedAndAHealActionIsRecorded) {
  run(*store_, [](Db& db) {
    PhoneRepository repo(db);
    ResetRecord r;
    r.reset_id = "r-1";
    r.phone_id = "phone_01";
    r.trigger = "timeout";
    r.status = "pending";
    r.requested_at = 2000;
    repo.insertReset(r);
    r.status = "running";
    repo.updateReset(r, 2001);  // no step yet: nothing
    r.steps.push_back(json::object{{"step", "adb_reconnect"}, {"status", "failed"}, {"detail", "not back"}});
    repo.updateReset(r, 2002);
    r.steps.push_back(json::object{{"step", "usb_reset"}, {"status", "succeeded"}, {"detail", "back"}});
    r.status = "succeeded";
    r.ended_at = 2003;
    repo.updateReset(r, 2003);

    ResetRecord probe;
    probe.reset_id = "r-2";
    probe.phone_id = "phone_02";
    probe.trigger = "probe";
    probe.status = "recorded";
    probe.reason = "liveness probe failed: no answer";
    probe.requested_at = 2004;
    probe.ended_at = 2004;
    repo.insertReset(probe);
  });
  const auto e = events();
  std::vector<std::string> kinds;
  for (const auto& ev : e) kinds.push_back(ev.kind);
  EXPECT_EQ(kinds,
            (std::vector<std::string>{"reset.started", "reset.step", "reset.step", "reset.ended", "reset.recorded"}));
  ASSERT_EQ(e.size(), 5u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(e[i].ids.phone_id, "phone_01") << i;
    EXPECT_EQ(e[i].ids.reset_id, "r-1") << i;
  }
  EXPECT_EQ(e[0].time, 2000);
  EXPECT_EQ(payload(e[0]), (json::object{{"status", "pending"}, {"trigger", "timeout"}, {"reason", nullptr}}));
  EXPECT_EQ(payload(e[1]), (json::object{{"index", 0},
                                         {"trigger", "timeout"},
                                         {"step", "adb_reconnect"},
                                         {"status", "failed"},
                                         {"detail", "not back"}}));
  EXPECT_EQ(payload(e[2]).at("index"), 1);
  EXPECT_EQ(payload(e[2]).at("step"), "usb_reset");
  EXPECT_EQ(payload(e[3]), (json::object{{"status", "succeeded"}, {"trigger", "timeout"}, {"steps", 2}}));
  EXPECT_EQ(e[4].ids.phone_id, "phone_02");
  EXPECT_EQ(e[4].ids.reset_id, "r-2");
  EXPECT_EQ(
      payload(e[4]),
      (json::object{{"status", "recorded"}, {"trigger", "probe"}, {"reason", "liveness probe failed: no answer"}}));
}

TEST_F(EventLogTest, ATimeoutKillIsTerminationIssuedWithTheItemsIds) {
  run(*store_, [](Db& db) {
    Process p;
    p.process_id = "p-1";
    p.status = ProcessStatus::kRunning;
    p.phone_id = "phone_03";
    p.account_id = "acct";
    p.capability_request_id = "cap";
    p.created_at = p.updated_at = 3000;
    QueueItem it;
    it.queue_item_id = "p-1-q0";
    it.command = {"/bin/true"};
    p.items.push_back(it);
    ProcessRepository(db).insertProcess(p);
  });
  const std::int64_t before = head();
  run(*store_, [](Db& db) {
    ExecutionRepository repo(db);
    repo.recordKill("p-1-q0", "timeout", 3100);
    repo.recordKill("nope", "timeout", 3101);  // no such item: nothing
  });
  const auto e = events(before);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].kind, "termination.issued");
  EXPECT_EQ(e[0].ids.process_id, "p-1");
  EXPECT_EQ(e[0].ids.queue_item_id, "p-1-q0");
  EXPECT_EQ(e[0].ids.phone_id, "phone_03");
  EXPECT_EQ(e[0].time, 3100);
  EXPECT_EQ(payload(e[0]), (json::object{{"termination", "issued"}, {"cause", "timeout"}}));
}

// [events] retention_days: a round drops every event older than the cutoff
// (in batches), keeps the rest, and a later round drops those that aged since.
TEST_F(EventLogTest, RetentionDropsEventsOlderThanRetentionDays) {
  FakeClock clock;
  os::FakeLoop loop(clock);
  const WallMs now = clock.wallNowMs();
  const WallMs day = 24 * 3600 * 1000;
  run(*store_, [&](Db& db) {
    EventLog log(db);
    const EventIds ids{std::nullopt, std::nullopt, std::string("phone_01"), std::nullopt};
    for (int i = 0; i < 5; ++i) log.append(event_kind::kPhoneState, ids, json::object{{"n", i}}, now - 8 * day + i);
    for (int i = 5; i < 8; ++i) log.append(event_kind::kPhoneState, ids, json::object{{"n", i}}, now - 6 * day);
    for (int i = 8; i < 10; ++i) log.append(event_kind::kPhoneState, ids, json::object{{"n", i}}, now - 1000);
  });
  EventRetentionOptions options;
  options.max_age = std::chrono::days(7);
  options.max_events = 1'000'000;
  options.batch = 2;  // the 5 old ones take three batches
  options.interval = std::chrono::minutes(1);
  EventRetention retention(*store_, loop, clock, options);
  loop.post([&] { retention.start(); });
  ASSERT_TRUE(loop.runUntil([&] { return retention.pruned() >= 5 && loop.pendingTimers() == 1; }));
  EXPECT_EQ(retention.pruned(), 5u);
  auto kept = events();
  ASSERT_EQ(kept.size(), 5u);
  EXPECT_EQ(kept.front().seq, 6);
  EXPECT_EQ(payload(kept.front()).at("n"), 5);

  // Two days on, the next round finds the 6-day-old ones past the cutoff.
  clock.advanceMs(2 * day - 60'000);
  loop.advance(std::chrono::minutes(1));
  ASSERT_TRUE(loop.runUntil([&] { return retention.pruned() >= 8 && loop.pendingTimers() == 1; }));
  EXPECT_EQ(retention.pruned(), 8u);
  kept = events();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept.front().seq, 9);
  EXPECT_EQ(head(), 10);  // seqs are never reused
}

}  // namespace
}  // namespace phonefarm::store
