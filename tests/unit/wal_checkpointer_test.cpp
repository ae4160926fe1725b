// WAL checkpoints happen on the checkpointer's connection, off the commit
// path, once the WAL crosses its threshold; the database file receives the
// pages and the data stays intact.
#include "common/store/wal_checkpointer.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>

#include "common/store/store.hpp"

namespace phonefarm::store {
namespace {

using namespace std::chrono_literals;

class WalCheckpointerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("wal-ckpt-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  template <class T>
  Result<T> run(Store& store, std::function<T(Db&)> fn) {
    std::promise<Result<T>> done;
    store.submit<T>(std::move(fn), [&done](Result<T> r) { done.set_value(std::move(r)); });
    auto future = done.get_future();
    if (future.wait_for(10s) != std::future_status::ready) return makeError(ErrorKind::kInternal, "timeout");
    return future.get();
  }

  std::filesystem::path dir_;
};

TEST_F(WalCheckpointerTest, CheckpointsRunInTheBackgroundPastTheThreshold) {
  StoreOptions options;
  options.path = dir_ / "agent.db";
  Store store(options);
  ASSERT_TRUE(run<int>(store, [](Db& db) {
                db.exec("CREATE TABLE blobs (x TEXT)");
                return 0;
              }).ok());
  const auto db_size_before = std::filesystem::file_size(options.path);
  EXPECT_EQ(store.stats().checkpoints, 0u);
  // ~3 pages per commit: ~1500 WAL pages, past kBackgroundPages.
  const std::string blob(10'000, 'x');
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(run<int>(store, [&blob](Db& db) {
                  db.prepare("INSERT INTO blobs (x) VALUES (?)").bind(1, blob).run();
                  return 0;
                }).ok());
  }
  // The checkpoint is asynchronous: wait for it under a deadline.
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (store.stats().checkpoints == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(store.stats().checkpoints, 1u);
  EXPECT_GT(std::filesystem::file_size(options.path), db_size_before + 1'000'000);  // pages reached the db file
  auto count = run<std::int64_t>(store, [](Db& db) {
    Statement& st = db.prepare("SELECT count(*) FROM blobs");
    st.step();
    const auto n = st.getInt(0);
    st.reset();
    return n;
  });
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 500);
}

TEST_F(WalCheckpointerTest, NoCheckpointBelowTheThreshold) {
  StoreOptions options;
  options.path = dir_ / "agent.db";
  Store store(options);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(run<int>(store, [i](Db& db) {
                  db.prepare("INSERT INTO phones (phone_id, serial, updated_at) VALUES (?, ?, 0)")
                      .bind(1, "p" + std::to_string(i))
                      .bind(2, "s" + std::to_string(i))
                      .run();
                  return 0;
                }).ok());
  }
  EXPECT_EQ(store.stats().checkpoints, 0u);
}

}  // namespace
}  // namespace phonefarm::store
