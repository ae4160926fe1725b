// The crash loop: two clients submit and cancel work (soft, hard,
// soft_then_force) while the agent is SIGKILLed at a random moment, round
// after round on the same state_dir. After every restart:
//   - no acknowledged write is lost: every 201 submit exists, every 200 cancel
//     is in its process's cancel_audit and the process is in the state the
//     answer implied or a later one the contract allows;
//   - every committed termination happened: a process whose stored cancel
//     holds a kill (hard, or soft_then_force's force_at) ends `cancelled` with
//     its whole tree gone — no pid the job recorded alive, no process carrying
//     its PHONEFARM_PROCESS_ID, its cgroup leaf empty — within a deadline
//     after the restart (or after force_at, when that is later).
// Jobs are long-running scripts that record their own pid, a child, a setsid
// escapee and a double-forked orphan, plus their cgroup, so survivors are
// found without asking the agent. Half of them ignore the stop notice (only
// a kill ends them), half stop on it.
//
// Size: PHONEFARM_CRASH_LOOP_ROUNDS (default 5, the CI smoke size); the RNG
// seed is printed and PHONEFARM_CRASH_LOOP_SEED replays it (the choices, not
// the thread timing).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/work_fixture.hpp"
#include "tests/support/state_dir_lock.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr int kClients = 2;
constexpr std::size_t kMaxOpenPerClient = 8;
// After a restart (or after force_at, when later) a committed kill must have
// emptied the tree within this.
constexpr std::int64_t kTerminationDeadlineMs = 8'000;
constexpr std::int64_t kMaxForceAfterSeconds = 3;

unsigned long envNumber(const char* name, unsigned long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long n = std::strtoul(v, &end, 10);
  return end != nullptr && *end == '\0' ? n : fallback;
}

std::int64_t wallNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string str(const json::value& v) { return v.is_string() ? std::string(v.as_string()) : std::string(); }

bool isTerminal(const std::string& status) {
  return status == "succeeded" || status == "failed" || status == "cancelled";
}

// A 200 answer to a cancel, as the client saw it.
struct AckedCancel {
  std::string reason;  // unique per request
  std::string strategy;
  std::string status;          // cancel_requested | ignored_terminal
  std::string process_status;  // the process as stored after the request
  std::string termination;     // termination.status
  std::string force_at;        // termination.force_at, or ""
  std::vector<std::string> cancelled_items;
  bool executing = false;  // an item was executing (active_queue_item_ids)
};

// One process the clients submitted (or tried to).
struct Tracked {
  std::string id;
  int items = 0;
  bool stubborn = false;  // ignores the stop notice
  bool acked = false;     // 201 seen (or, after an unanswered submit, seen in the store since)
  bool open = true;       // its client may still cancel it
  std::vector<AckedCancel> cancels;
  std::vector<std::string> unanswered_cancels;  // reasons of cancels sent without an answer
  int audited = 0;                              // cancels already found in cancel_audit
  std::string last_status;                      // as the last check found it
};

struct Tally {
  int submits = 0;
  int unanswered = 0;
  std::map<std::string, int> cancels;  // by strategy
  int carried_terminations = 0;        // a committed kill still to happen at a restart
  int rearmed_escalations = 0;         // ... of which force_at was still ahead
  int lock_waits = 0;                  // restarts that had to wait for agent.lock
};

class CrashLoopTest : public WorkFixture {
 protected:
  std::string phonesConfig() const override {
    std::string s;
    for (int i = 1; i <= 4; ++i) {
      s += "[[phones]]\nid = \"phone_0" + std::to_string(i) + "\"\nserial = \"crash-loop-" + std::to_string(i) + "\"\n";
    }
    return s;
  }

  void SetUp() override {
    WorkFixture::SetUp();
    job_ = writeJob("crash_job.sh",
                    "#!/bin/sh\n"
                    "# $1: where to record, $2: polite (stops on the notice) or stubborn\n"
                    "out=$1\n"
                    "if [ \"$2\" = polite ]; then\n"
                    "  trap 'kill $child $escaped $orphan $w 2>/dev/null; exit 0' TERM\n"
                    "else\n"
                    "  trap 'echo TERM >> \"$out.signals\"' TERM\n"
                    "fi\n"
                    "sleep 600 & child=$!\n"
                    "setsid sleep 600 & escaped=$!\n"
                    "orphan=$(setsid sleep 600 >/dev/null 2>&1 & echo $!)\n"
                    "{ echo $$ $child $escaped $orphan; cat /proc/self/cgroup; } > \"$out.tmp\"\n"
                    "mv \"$out.tmp\" \"$out.pids\"\n"
                    "while :; do sleep 1 & w=$!; wait $w; done\n");
    const unsigned long seed = envNumber("PHONEFARM_CRASH_LOOP_SEED", std::random_device{}());
    seed_ = static_cast<std::uint32_t>(seed);
    rounds_ = static_cast<int>(envNumber("PHONEFARM_CRASH_LOOP_ROUNDS", 5));
    std::printf("crash loop: %d rounds, PHONEFARM_CRASH_LOOP_SEED=%u\n", rounds_, seed_);
    RecordProperty("seed", std::to_string(seed_));
  }

  std::string where(const std::string& id) const {
    return "[seed " + std::to_string(seed_) + ", round " + std::to_string(round_) + ", process " + id + "]";
  }

  // ---- the load ------------------------------------------------------------

  // One client until the agent stops answering (it was killed) or `stop`.
  void runClient(int client, std::uint16_t port, const std::atomic<bool>& stop) {
    std::mt19937 rng(seed_ * 7919u + static_cast<std::uint32_t>(round_) * 31u + static_cast<std::uint32_t>(client));
    HttpClient http("127.0.0.1", port);
    http.setTimeout(3s);
    std::uniform_int_distribution<int> pause_us(0, 15'000);
    std::bernoulli_distribution coin(0.5);
    int n = 0;
    while (!stop.load()) {
      std::vector<std::string> open;
      {
        std::lock_guard lock(mutex_);
        for (const auto& id : order_[client]) {
          if (ledger_[id].open) open.push_back(id);
        }
      }
      const bool submit = open.size() < 2 || (open.size() < kMaxOpenPerClient && std::bernoulli_distribution(0.4)(rng));
      const std::string tag = "r" + std::to_string(round_) + "-c" + std::to_string(client) + "-" + std::to_string(n++);
      try {
        if (submit) {
          submitOne(http, client, id_prefix_ + tag, rng);
        } else {
          // The oldest open process is most likely executing on its phone.
          const std::string& target =
              coin(rng) ? open.front() : open[std::uniform_int_distribution<std::size_t>(0, open.size() - 1)(rng)];
          cancelOne(http, target, "crash loop " + tag, rng);
        }
      } catch (const std::exception&) {
        return;  // the agent is gone: this request stays unanswered
      }
      // The pace of the load: a scheduler does not send back to back.
      std::this_thread::sleep_for(std::chrono::microseconds(pause_us(rng)));
    }
  }

  void submitOne(HttpClient& http, int client, const std::string& id, std::mt19937& rng) {
    Tracked t;
    t.id = id;
    t.items = std::uniform_int_distribution<int>(1, 2)(rng);
    t.stubborn = std::bernoulli_distribution(0.5)(rng);
    const std::string phone = "phone_0" + std::to_string(std::uniform_int_distribution<int>(1, 4)(rng));
    json::array items;
    for (int i = 0; i < t.items; ++i) {
      const std::string item_id = id + "-q" + std::to_string(i);
      items.push_back(json::object{
          {"queue_item_id", item_id},
          {"command", json::array{job_, (outDir() / item_id).string(), t.stubborn ? "stubborn" : "polite"}},
          {"stop_signal", "SIGTERM"}});
    }
    const json::object body{{"process_id", id},
                            {"phone_id", phone},
                            {"account_id", "account_1"},
                            {"requested_by", json::object{{"system", "crash-loop"}}},
                            {"queue_items", std::move(items)}};
    {
      std::lock_guard lock(mutex_);
      ledger_[id] = t;  // unanswered until the 201
      order_[client].push_back(id);
      ++tally_.unanswered;
    }
    auto r =
        http.post("/processes", json::serialize(body), {{"Authorization", std::string("Bearer ") + kScheduleToken}});
    std::lock_guard lock(mutex_);
    --tally_.unanswered;
    EXPECT_EQ(r.status, 201) << where(id) << " " << r.body;
    if (r.status != 201) {
      ledger_[id].open = false;
      return;
    }
    ledger_[id].acked = true;
    ++tally_.submits;
  }

  void cancelOne(HttpClient& http, const std::string& id, const std::string& reason, std::mt19937& rng) {
    static const std::vector<std::string> kStrategies{"soft", "hard", "soft_then_force"};
    const std::string strategy = kStrategies[std::uniform_int_distribution<std::size_t>(0, 2)(rng)];
    const auto force_after = std::uniform_int_distribution<std::int64_t>(1, kMaxForceAfterSeconds)(rng);
    const std::string body = R"({"reason":")" + reason + R"(","strategy":")" + strategy +
                             R"(","force_after_seconds":)" + std::to_string(force_after) +
                             R"(,"requested_by":{"system":"crash-loop"}})";
    {
      std::lock_guard lock(mutex_);
      ledger_[id].unanswered_cancels.push_back(reason);
      ++tally_.unanswered;
    }
    auto r =
        http.post("/processes/" + id + "/cancel", body, {{"Authorization", std::string("Bearer ") + kOperateToken}});
    std::lock_guard lock(mutex_);
    --tally_.unanswered;
    Tracked& t = ledger_[id];
    ASSERT_EQ(r.status, 200) << where(id) << " " << r.body;
    t.unanswered_cancels.pop_back();
    const auto answer = r.json().as_object();
    AckedCancel a;
    a.reason = reason;
    a.strategy = strategy;
    a.status = str(answer.at("status"));
    a.process_status = str(answer.at("process").at("status"));
    a.termination = str(answer.at("termination").at("status"));
    if (const auto* f = answer.at("termination").as_object().if_contains("force_at")) a.force_at = str(*f);
    for (const auto& item : answer.at("cancelled_queue_item_ids").as_array()) a.cancelled_items.push_back(str(item));
    a.executing = !answer.at("active_queue_item_ids").as_array().empty();
    // Only a soft notice to running work leaves something for a later cancel.
    if (strategy != "soft" || isTerminal(a.process_status)) t.open = false;
    t.cancels.push_back(std::move(a));
    ++tally_.cancels[strategy];
  }

  // ---- what the job and the kernel say --------------------------------------

  struct JobRecord {
    std::vector<pid_t> pids;  // the job, a child, a setsid escapee, an orphan
    fs::path cgroup;          // the leaf it ran in
  };

  // out/<item>.pids, written (renamed into place) by the job once it has
  // started its children.
  std::optional<JobRecord> jobRecord(const std::string& item_id) const {
    std::ifstream in(outDir() / (item_id + ".pids"));
    if (!in) return std::nullopt;
    JobRecord rec;
    std::string line;
    if (std::getline(in, line)) rec.pids = parsePids(line);
    while (std::getline(in, line)) {
      if (!line.starts_with("0::")) continue;
      // The leaf relative to the cgroup2 mount; ours sits under cgroup_.
      const std::string mark = "/" + cgroup_.filename().string() + "/";
      const auto at = line.find(mark);
      if (at != std::string::npos) rec.cgroup = cgroup_ / line.substr(at + mark.size());
    }
    return rec;
  }

  // The value of PHONEFARM_PROCESS_ID in a live process's environment, if any.
  static std::optional<std::string> processIdOf(pid_t pid) {
    if (!alive(pid)) return std::nullopt;
    std::ifstream in("/proc/" + std::to_string(pid) + "/environ");
    std::string var;
    while (std::getline(in, var, '\0')) {
      if (var.starts_with("PHONEFARM_PROCESS_ID=")) return var.substr(std::string("PHONEFARM_PROCESS_ID=").size());
    }
    return std::nullopt;
  }

  // Every live process on the host that carries a PHONEFARM_PROCESS_ID, by it.
  static std::map<std::string, std::vector<pid_t>> workByProcess() {
    std::map<std::string, std::vector<pid_t>> by;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
      const auto pid = static_cast<pid_t>(std::stol(name));
      if (auto id = processIdOf(pid)) by[*id].push_back(pid);
    }
    return by;
  }

  // What is left of the process's work: "" when nothing.
  std::string survivors(const Tracked& t, const std::map<std::string, std::vector<pid_t>>& work) const {
    std::ostringstream out;
    for (int i = 0; i < t.items; ++i) {
      const std::string item_id = t.id + "-q" + std::to_string(i);
      const auto rec = jobRecord(item_id);
      if (!rec) continue;
      for (pid_t pid : rec->pids) {
        // A recorded pid counts while it is still this job's (not reused).
        if (processIdOf(pid) == t.id) out << item_id << ": recorded pid " << pid << " alive; ";
      }
      if (!rec->cgroup.empty()) {
        auto populated = exec::isPopulated(rec->cgroup);
        if (populated && *populated) out << item_id << ": cgroup " << rec->cgroup.string() << " populated; ";
      }
    }
    if (auto it = work.find(t.id); it != work.end()) {
      out << "processes carrying its id:";
      for (pid_t pid : it->second) out << " " << pid;
    }
    return out.str();
  }

  // ---- what the agent says ----------------------------------------------------

  std::map<std::string, json::object> listAll() {
    std::map<std::string, json::object> all;
    std::string cursor;
    for (;;) {
      auto r = call("GET", "/processes?limit=500" + (cursor.empty() ? "" : "&cursor=" + cursor), "", kReadToken);
      EXPECT_EQ(r.status, 200) << r.body;
      if (r.status != 200) return all;
      const auto page = r.json().as_object();
      for (const auto& p : page.at("processes").as_array()) all[str(p.at("process_id"))] = p.as_object();
      if (!page.at("next_cursor").is_string()) return all;
      cursor = str(page.at("next_cursor"));
    }
  }

  static bool committedKill(const json::object& p) {
    const auto& c = p.at("cancel");
    return c.is_object() && (c.at("strategy") == "hard" || c.at("force_at").is_string());
  }

  // ---- the checks after a restart ---------------------------------------------

  // What the answers promised, against the store as the restarted agent has it.
  void checkAcknowledged(const std::map<std::string, json::object>& all) {
    for (auto& [id, t] : ledger_) {
      auto it = all.find(id);
      if (!t.acked) {
        // An unanswered submit may or may not have been committed; now it is
        // one or the other for good.
        if (it == all.end()) {
          t.open = false;
          t.items = 0;
          continue;
        }
        t.acked = true;
      }
      if (it == all.end()) {
        ADD_FAILURE() << where(id) << " acknowledged (201) but missing after the restart";
        continue;
      }
      const json::object& p = it->second;
      const std::string status = str(p.at("status"));
      t.last_status = status;
      EXPECT_EQ(p.at("queue_items").as_array().size(), static_cast<std::size_t>(t.items)) << where(id);
      if (isTerminal(status)) t.open = false;

      std::set<std::string> reasons;
      for (const auto& a : t.cancels) reasons.insert(a.reason);
      const auto& cancel = p.at("cancel");
      if (cancel.is_object()) {
        // The record is the first cancel's: one the clients sent.
        const std::string reason = str(cancel.at("reason"));
        const bool sent =
            reasons.contains(reason) ||
            std::find(t.unanswered_cancels.begin(), t.unanswered_cancels.end(), reason) != t.unanswered_cancels.end();
        EXPECT_TRUE(sent) << where(id) << " holds a cancel nobody sent: " << json::serialize(p);
      } else {
        EXPECT_TRUE(t.cancels.empty()) << where(id) << " lost its acknowledged cancel: " << json::serialize(p);
        EXPECT_TRUE(status == "queued" || status == "running" || status == "failed")
            << where(id) << " never cancelled, yet: " << json::serialize(p);
      }
      for (const auto& a : t.cancels) {
        if (a.status == "ignored_terminal") {
          EXPECT_EQ(status, a.process_status) << where(id) << " was terminal at the cancel and changed since";
        } else if (a.process_status == "cancelled") {
          EXPECT_EQ(status, "cancelled") << where(id) << " answered cancelled: " << json::serialize(p);
        } else {
          EXPECT_TRUE(status == "cancelling" || status == "cancelled")
              << where(id) << " answered " << a.process_status << ": " << json::serialize(p);
        }
        if (a.termination == "issued") {
          EXPECT_TRUE(cancel.is_object() && cancel.at("strategy") == "hard")
              << where(id) << " lost its acknowledged hard kill: " << json::serialize(p);
        }
        if (!a.force_at.empty() && cancel.is_object() && cancel.at("strategy") != "hard") {
          // Later cancels only bring force_at forward (same format: compare as text).
          EXPECT_TRUE(cancel.at("force_at").is_string() && str(cancel.at("force_at")) <= a.force_at)
              << where(id) << " acknowledged force_at " << a.force_at << ", stored " << json::serialize(p);
        }
        // Items cancelled while pending never run: the agent never started
        // them, and their job never wrote a line.
        for (const auto& item_id : a.cancelled_items) {
          for (const auto& item : p.at("queue_items").as_array()) {
            if (item.at("queue_item_id") != item_id.c_str()) continue;
            EXPECT_EQ(item.at("status"), "cancelled") << where(id) << " " << json::serialize(p);
            EXPECT_TRUE(item.at("started_at").is_null()) << where(id) << " " << json::serialize(p);
          }
          EXPECT_FALSE(fs::exists(outDir() / (item_id + ".tmp")) || fs::exists(outDir() / (item_id + ".pids")))
              << where(id) << " item " << item_id << " ran after its cancel was acknowledged";
        }
      }
    }
  }

  // Each acknowledged cancel is in cancel_audit, in the order sent.
  void checkAudits() {
    for (auto& [id, t] : ledger_) {
      if (!t.acked || static_cast<int>(t.cancels.size()) == t.audited) continue;
      const auto p = getProcess(id);
      if (p.empty()) continue;  // reported by checkAcknowledged
      std::vector<std::string> audit;
      for (const auto& entry : p.at("cancel_audit").as_array()) audit.push_back(str(entry.at("reason")));
      std::size_t next = 0;
      for (const auto& a : t.cancels) {
        auto at = std::find(audit.begin() + static_cast<std::ptrdiff_t>(next), audit.end(), a.reason);
        EXPECT_NE(at, audit.end()) << where(id) << " cancel_audit lacks the acknowledged \"" << a.reason << "\"";
        if (at != audit.end()) next = static_cast<std::size_t>(at - audit.begin()) + 1;
      }
      t.audited = static_cast<int>(t.cancels.size());
    }
  }

  // Every committed kill, and every process the store calls ended, has no
  // work left within the deadline: waits for it, polling both sides.
  void checkTerminations(const std::map<std::string, json::object>& at_restart, std::int64_t restarted_ms) {
    std::map<std::string, std::int64_t> due;  // process id -> deadline (wall ms)
    for (const auto& [id, p] : at_restart) {
      if (!ledger_.contains(id) || !ledger_[id].acked || unterminated_.contains(id)) continue;
      const bool kill = committedKill(p);
      if (!kill && !isTerminal(str(p.at("status")))) continue;
      std::int64_t from = restarted_ms;
      if (kill && p.at("status") == "cancelling") {
        ++tally_.carried_terminations;
        if (p.at("cancel").at("force_at").is_string()) {
          const auto force_at = parseTimeMs(p.at("cancel").at("force_at"));
          if (force_at > restarted_ms) ++tally_.rearmed_escalations;
          from = std::max(from, force_at);
        }
      }
      due[id] = from + kTerminationDeadlineMs;
    }
    while (!due.empty()) {
      const auto now = wallNowMs();
      const auto all = listAll();
      const auto work = workByProcess();
      for (auto it = due.begin(); it != due.end();) {
        const auto& t = ledger_[it->first];
        const auto found = all.find(it->first);
        if (found == all.end()) {
          ADD_FAILURE() << where(it->first) << " vanished from the store";
          it = due.erase(it);
          continue;
        }
        const auto& p = found->second;
        std::string left = survivors(t, work);
        if (committedKill(p) && p.at("status") != "cancelled") {
          left += " status " + str(p.at("status"));
        }
        if (left.empty()) {
          it = due.erase(it);
          continue;
        }
        if (now > it->second) {
          unterminated_.insert(it->first);
          ADD_FAILURE() << where(it->first) << " committed termination did not happen within " << kTerminationDeadlineMs
                        << " ms of the restart (or of force_at): " << left << "\n"
                        << json::serialize(p) << "\nagent output (tail):\n"
                        << outputTail();
          it = due.erase(it);
          continue;
        }
        ++it;
      }
      if (!due.empty()) std::this_thread::sleep_for(20ms);
    }
  }

  std::string outputTail() const {
    const auto lines = agent_->lines();
    std::string tail;
    for (std::size_t i = lines.size() > 40 ? lines.size() - 40 : 0; i < lines.size(); ++i) tail += lines[i] + "\n";
    return tail;
  }

  void verifyAfterRestart() {
    const auto restarted = wallNowMs();
    const auto all = listAll();
    checkAcknowledged(all);
    checkAudits();
    checkTerminations(all, restarted);
  }

  // An immediate restart after the kill may find agent.lock still held for a
  // few milliseconds (tests/support/state_dir_lock.hpp): wait for it, with a
  // deadline; a holder that stays is named in the failure.
  void waitForStateDirLock() {
    const fs::path lock = dir_.path() / "state" / "agent.lock";
    const bool free = phonefarm::testing::waitForStateDirLock(lock, 5s, [&] {
      ++tally_.lock_waits;
      std::printf("crash loop: round %d, agent.lock still held after the kill by%s\n", round_,
                  phonefarm::testing::stateDirLockHolders(lock).c_str());
    });
    ASSERT_TRUE(free) << "state_dir still locked 5 s after the agent was killed; held by"
                      << phonefarm::testing::stateDirLockHolders(lock);
  }

  // One round: the load, a SIGKILL at a random moment, a restart, the checks.
  void round(std::mt19937& rng) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    clients.reserve(kClients);
    for (int c = 0; c < kClients; ++c) clients.emplace_back([this, c, &stop] { runClient(c, port_, stop); });
    // The crash lands anywhere in the load: before, during or after starts,
    // notices, kills and their commits.
    const int crash_after_ms = std::uniform_int_distribution<int>(100, 1500)(rng);
    std::this_thread::sleep_for(std::chrono::milliseconds(crash_after_ms));
    agent_->kill(SIGKILL);
    const auto status = agent_->waitExit(10s);
    EXPECT_EQ(status, 128 + SIGKILL);
    stop = true;
    for (auto& c : clients) c.join();
    client_.reset();
    waitForStateDirLock();
    if (HasFatalFailure()) return;
    startAgent();
    std::printf("crash loop: round %d, SIGKILL after %d ms, %d submits and %d cancels acknowledged so far\n", round_,
                crash_after_ms, tally_.submits,
                tally_.cancels["soft"] + tally_.cancels["hard"] + tally_.cancels["soft_then_force"]);
    verifyAfterRestart();
  }

  std::string job_;
  // In every process id: a run of this test on the same host at the same
  // time (another checkout, say) has work with ids of its own.
  const std::string id_prefix_ = "crash-" + std::to_string(::getpid()) + "-";
  std::uint32_t seed_ = 0;
  int rounds_ = 0;
  int round_ = 0;
  std::mutex mutex_;  // the clients share the ledger
  std::map<std::string, Tracked> ledger_;
  std::map<int, std::vector<std::string>> order_;  // per client, in submit order
  std::set<std::string> unterminated_;             // reported once, not again each round
  Tally tally_;
};

TEST_F(CrashLoopTest, NoAcknowledgedWriteIsLostAndEveryCommittedTerminationHappens) {
  ASSERT_FALSE(cgroup_.empty()) << "no writable cgroup v2 on this host";
  std::mt19937 rng(seed_);
  const auto start = std::chrono::steady_clock::now();
  for (round_ = 1; round_ <= rounds_ && !HasFatalFailure(); ++round_) round(rng);
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int lost_runs = 0;
  for (const auto& [id, t] : ledger_) lost_runs += t.last_status == "failed" && t.cancels.empty();
  std::printf(
      "crash loop: %d rounds in %.1f s, seed %u: %d submits and %d/%d/%d soft/hard/soft_then_force cancels "
      "acknowledged, %d requests cut off by a crash, %d committed kills carried over a crash (%d escalations "
      "re-armed), %d runs failed without a cancel, %d restarts waited for agent.lock\n",
      rounds_, seconds, seed_, tally_.submits, tally_.cancels["soft"], tally_.cancels["hard"],
      tally_.cancels["soft_then_force"], tally_.unanswered, tally_.carried_terminations, tally_.rearmed_escalations,
      lost_runs, tally_.lock_waits);
  // The loop must have exercised what it checks.
  EXPECT_GT(tally_.submits, 0);
  for (const char* s : {"soft", "hard", "soft_then_force"}) EXPECT_GT(tally_.cancels[s], 0) << s;
  EXPECT_GT(tally_.carried_terminations, 0) << "no crash left a committed kill to carry out";
}

}  // namespace
}  // namespace phonefarm::testing
