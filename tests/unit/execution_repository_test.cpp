// Executor SQL on a real store: the phone's head process (FIFO), execution
// rows for re-adoption, and escalation deadlines.
#include "common/store/execution_repository.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>

#include "common/store/process_repository.hpp"
#include "common/store/store.hpp"

namespace phonefarm::store {
namespace {

class ExecutionRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("exec-repo-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    StoreOptions options;
    options.path = dir_ / "agent.db";
    store_ = std::make_unique<Store>(options);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Runs `fn` as one store job and waits for its commit.
  template <class T>
  T run(std::function<T(Db&)> fn) {
    std::promise<Result<T>> done;
    store_->submit<T>(std::move(fn), [&done](Result<T> r) { done.set_value(std::move(r)); });
    auto future = done.get_future();
    EXPECT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    auto r = future.get();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return std::move(r).value();
  }

  void addProcess(const std::string& id, const std::string& phone, ProcessStatus status) {
    run<int>([&](Db& db) {
      Process p;
      p.process_id = id;
      p.phone_id = phone;
      p.account_id = "acc";
      p.capability_request_id = id;
      p.status = status;
      QueueItem item;
      item.queue_item_id = id + "-q0";
      item.command = {"/bin/true"};
      p.items.push_back(item);
      ProcessRepository(db).insertProcess(p);
      return 0;
    });
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(ExecutionRepositoryTest, HeadProcessIsTheOldestUnfinishedOnThatPhone) {
  addProcess("done", "phone_01", ProcessStatus::kSucceeded);
  addProcess("first", "phone_01", ProcessStatus::kRunning);
  addProcess("second", "phone_01", ProcessStatus::kQueued);
  addProcess("other", "phone_02", ProcessStatus::kQueued);
  auto head = [&](const char* phone) {
    return run<std::optional<std::string>>(
        [phone](Db& db) { return ExecutionRepository(db).headProcessOfPhone(phone); });
  };
  EXPECT_EQ(head("phone_01"), "first");
  EXPECT_EQ(head("phone_02"), "other");
  EXPECT_EQ(head("phone_03"), std::nullopt);
}

// Job env values are secrets: kept while the item may run, forgotten (names
// kept, values "") in the transaction that ends it, whatever path ends it.
TEST_F(ExecutionRepositoryTest, EnvValuesAreForgottenWhenTheItemEnds) {
  run<int>([](Db& db) {
    Process p;
    p.process_id = "p";
    p.phone_id = "phone_01";
    p.account_id = "acc";
    p.capability_request_id = "p";
    p.status = ProcessStatus::kRunning;
    for (const char* id : {"p-q0", "p-q1"}) {
      QueueItem item;
      item.queue_item_id = id;
      item.position = id[3] - '0';
      item.command = {"/bin/true"};
      item.env = {{"TOKEN", "s3cret-value"}, {"MODE", "fast"}};
      p.items.push_back(item);
    }
    ProcessRepository(db).insertProcess(p);
    return 0;
  });
  auto envOf = [&](const char* item) {
    return run<std::string>([item](Db& db) {
      auto p = ProcessRepository(db).loadProcess("p");
      for (const auto& it : p->items) {
        if (it.queue_item_id != item) continue;
        std::string text;
        for (const auto& [k, v] : it.env) text += k + "=" + v + ";";
        return text;
      }
      return std::string("missing");
    });
  };
  EXPECT_EQ(envOf("p-q0"), "TOKEN=s3cret-value;MODE=fast;");
  for (const ItemStatus ended : {ItemStatus::kSucceeded, ItemStatus::kSkipped}) {
    run<int>([ended](Db& db) {
      ProcessRepository repo(db);
      auto p = repo.loadProcess("p");
      QueueItem item = p->items[ended == ItemStatus::kSucceeded ? 0 : 1];
      item.status = ItemStatus::kExecuting;
      repo.updateItemState(item);  // not terminal: values stay
      item.status = ended;
      repo.updateItemState(item);
      return 0;
    });
  }
  EXPECT_EQ(envOf("p-q0"), "TOKEN=;MODE=;");
  EXPECT_EQ(envOf("p-q1"), "TOKEN=;MODE=;");
  const auto stored = run<int>([](Db& db) {
    Statement& st = db.prepare("SELECT count(*) FROM queue_items WHERE env LIKE '%s3cret%'");
    st.step();
    const int n = static_cast<int>(st.getInt(0));
    st.reset();
    return n;
  });
  EXPECT_EQ(stored, 0);
}

TEST_F(ExecutionRepositoryTest, OpenExecutionsAreThoseWithoutAnEnd) {
  addProcess("p", "phone_01", ProcessStatus::kRunning);
  run<int>([](Db& db) {
    ExecutionRepository repo(db);
    repo.insertExecution(
        ExecutionRow{"e1", "p-q0", "", "cgroup", "/sys/fs/cgroup/x/e1", 1234, 99, "boot-a", 1000, {}, {}});
    repo.insertExecution(
        ExecutionRow{"e2", "p-q0", "", "process-group", std::nullopt, 1300, 100, "boot-a", 2000, {}, {}});
    repo.finishExecution("e1", 1500, "succeeded");
    return 0;
  });
  auto open = run<std::vector<ExecutionRow>>([](Db& db) { return ExecutionRepository(db).openExecutions(); });
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].execution_id, "e2");
  EXPECT_EQ(open[0].process_id, "p");
  EXPECT_EQ(open[0].runtime, "process-group");
  EXPECT_FALSE(open[0].cgroup);
  EXPECT_EQ(open[0].leader_pid, 1300);
  EXPECT_EQ(open[0].leader_start_time, 100);
  EXPECT_EQ(open[0].boot_id, "boot-a");
}

TEST_F(ExecutionRepositoryTest, EscalationsUpsertFireAndDelete) {
  addProcess("p", "phone_01", ProcessStatus::kCancelling);
  addProcess("r", "phone_02", ProcessStatus::kCancelling);
  run<int>([](Db& db) {
    ExecutionRepository repo(db);
    repo.upsertEscalation(EscalationRow{"p-q0", "p", 20'000, 9'000'000'000, "boot-a", 1000, {}});
    repo.upsertEscalation(EscalationRow{"r-q0", "r", 15'000, 8'000'000'000, "boot-a", 1000, {}});
    // A later cancel moves p's deadline earlier: replaced, not duplicated.
    repo.upsertEscalation(EscalationRow{"p-q0", "p", 12'000, 7'000'000'000, "boot-a", 1100, {}});
    return 0;
  });
  auto pending = run<std::vector<EscalationRow>>([](Db& db) { return ExecutionRepository(db).pendingEscalations(); });
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].queue_item_id, "p-q0");  // earliest first
  EXPECT_EQ(pending[0].force_at, 12'000);
  EXPECT_EQ(pending[0].force_at_boot_ns, 7'000'000'000);
  EXPECT_EQ(pending[0].created_at, 1000);
  run<int>([](Db& db) {
    ExecutionRepository repo(db);
    repo.markEscalationFired("p-q0", 12'001);
    repo.deleteEscalation("r-q0");
    return 0;
  });
  EXPECT_TRUE(
      run<std::vector<EscalationRow>>([](Db& db) { return ExecutionRepository(db).pendingEscalations(); }).empty());
}

}  // namespace
}  // namespace phonefarm::store
