// The executor; see executor.hpp.
#include "agent/exec/executor.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <pwd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "agent/cancel/escalation_deadline.hpp"
#include "agent/exec/capabilities.hpp"
#include "agent/exec/exec_shim.hpp"
#include "agent/exec/exec_status.hpp"
#include "agent/exec/signal_names.hpp"
#include "common/ids.hpp"
#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"
#include "common/store/execution_repository.hpp"
#include "common/store/process_repository.hpp"

namespace phonefarm::exec {

struct Executor::StartedItem {
  Process process;  // as stored after the start
  QueueItem item;
};

struct Executor::Execution {
  std::string execution_id;
  std::string item_id;
  std::string process_id;
  std::string phone_id;
  std::filesystem::path dir;
  std::string stop_signal;
  std::unique_ptr<Container> container;
  std::map<int, os::EventLoop::Id> watches;  // fd -> watch
  os::EventLoop::Id timeout_timer = 0;
  os::EventLoop::Id escalation_timer = 0;
  os::EventLoop::Id stuck_timer = 0;
  bool kill_issued = false;
  bool timed_out = false;
  bool item_cancel = false;  // the legacy item-level cancel was requested
  bool ending = false;       // the tree is gone; the end transaction is in flight
  std::optional<std::string> stuck_note;
  ItemOutcome outcome;  // set by end()
};

struct Executor::Recovery {
  struct Open {
    store::ExecutionRow row;
    std::string phone_id;
    QueueItem item;
  };
  std::vector<Open> open;
  std::vector<store::EscalationRow> escalations;
  int settled = 0;
};

namespace {

std::string marker(const std::string& execution_id) { return "PHONEFARM_EXECUTION_ID=" + execution_id; }

// Writes the items whose state differs (and `item_id` itself) and the process.
void storeTransition(store::ProcessRepository& repo, const Process& before, const Process& after,
                     const std::string& item_id) {
  for (std::size_t i = 0; i < after.items.size(); ++i) {
    if (after.items[i].queue_item_id == item_id || after.items[i].status != before.items[i].status) {
      repo.updateItemState(after.items[i]);
    }
  }
  repo.updateProcessState(after);
}

std::string describeOutcome(const ItemOutcome& o) {
  if (o.exit_code) return "exit " + std::to_string(*o.exit_code);
  if (o.signal) return "signal " + *o.signal;
  return "lost";
}

std::chrono::milliseconds untilWall(const Clock& clock, WallMs at) {
  return std::chrono::milliseconds(std::max<WallMs>(0, at - clock.wallNowMs()));
}

// The agent owns the directory and gives it run_as's primary group, mode 0770:
// the shim (as run_as) writes its logs and status.json there, 0640 with that
// group, and the agent, a member of the group, reads them and writes
// cancel.json, without CAP_DAC_OVERRIDE or CAP_CHOWN (changing a file's group
// to one of our own groups needs no capability). No setgid bit: the unit's
// RestrictSUIDSGID=yes refuses to set one.
Status makeExecDir(const std::filesystem::path& dir, gid_t gid) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return os::sysError("creating " + dir.string());
  os::FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return os::sysError("open " + dir.string());
  if (::fchown(fd.get(), static_cast<uid_t>(-1), gid) != 0) {
    return os::sysError("chgrp " + dir.string() + " to gid " + std::to_string(gid));
  }
  // After the chown: the umask must not narrow the mode the shim relies on.
  if (::fchmod(fd.get(), 0770) != 0) return os::sysError("chmod " + dir.string());
  return okStatus();
}

// What an unprivileged agent lacks to run work as run_as (nothing as root, or
// when run_as is the agent's own user): CAP_SETUID and CAP_SETGID for the exec
// shim to switch users, CAP_KILL to signal the work, and membership in
// run_as's primary group to read the status and logs the shim writes.
std::optional<std::string> missingPrivileges(const std::string& run_as, uid_t uid, gid_t gid) {
  const uid_t self = ::geteuid();
  if (self == 0 || self == uid) return std::nullopt;
  std::vector<std::string> missing;
  for (const int cap : {CAP_SETUID, CAP_SETGID, CAP_KILL}) {
    if (!hasEffectiveCapability(cap)) missing.push_back(capabilityName(cap));
  }
  const int count = ::getgroups(0, nullptr);
  std::vector<gid_t> groups(static_cast<std::size_t>(std::max(0, count)));
  if (count > 0 && ::getgroups(count, groups.data()) != count) groups.clear();
  if (::getegid() != gid && std::find(groups.begin(), groups.end(), gid) == groups.end()) {
    missing.push_back("membership in run_as's group (gid " + std::to_string(gid) + ")");
  }
  if (missing.empty()) return std::nullopt;
  std::string list;
  for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
  return "the agent runs as uid " + std::to_string(self) + " without " + list + ", needed to run work as '" + run_as +
         "' (see systemd/phonefarm-agent.service)";
}

}  // namespace

Executor::Executor(ExecutorOptions options, store::Store& store, const Clock& clock, os::EventLoop& loop,
                   Containment& containment, PhoneResetRequester& resets)
    : options_(std::move(options)),
      store_(store),
      clock_(clock),
      loop_(loop),
      containment_(containment),
      resets_(resets) {
  for (const auto& phone : options_.phones) slots_[phone.id];
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  ::getpwnam_r(options_.run_as.c_str(), &pw, buf.data(), buf.size(), &found);
  if (found == nullptr) {
    unavailable_ = "[work] run_as user '" + options_.run_as + "' does not exist";
  } else if (pw.pw_uid == 0 || pw.pw_gid == 0) {
    unavailable_ = "[work] run_as user '" + options_.run_as + "' is root; work never runs as root";
  } else {
    uid_ = pw.pw_uid;
    gid_ = pw.pw_gid;
    home_ = pw.pw_dir != nullptr ? pw.pw_dir : "/";
    unavailable_ = missingPrivileges(options_.run_as, uid_, gid_);
  }
  if (unavailable_) spdlog::error("exec.unavailable reason=\"{}\" processes stay queued", *unavailable_);
}

Executor::~Executor() = default;

Executor::Execution* Executor::find(const std::string& item_id) {
  auto it = executions_.find(item_id);
  return it == executions_.end() ? nullptr : it->second.get();
}

// ---------------------------------------------------------------- starting

void Executor::phoneChanged(const std::string& phone_id) { kick(phone_id); }

void Executor::kick(const std::string& phone_id) {
  if (stopping_ || unavailable_ || !started_) return;
  auto it = slots_.find(phone_id);
  if (it == slots_.end()) return;
  Slot& slot = it->second;
  if (slot.busy) {
    slot.again = true;
    return;
  }
  if (options_.can_start && !options_.can_start(phone_id)) return;  // announced again when it can
  slot.busy = true;
  slot.again = false;
  const std::string execution_id = newUuidV4();
  const WallMs now = clock_.wallNowMs();
  store::ExecutionRow row;
  row.execution_id = execution_id;
  row.runtime = std::string(containment_.runtime());
  row.cgroup = containment_.plannedCgroup(execution_id);
  row.boot_id = options_.boot_id;
  row.started_at = now;
  store_.submit<std::optional<StartedItem>>(
      [phone_id, row, now](store::Db& db) mutable -> std::optional<StartedItem> {
        store::ProcessRepository procs(db);
        store::ExecutionRepository execs(db);
        auto head = execs.headProcessOfPhone(phone_id);
        if (!head) return std::nullopt;
        auto before = procs.loadProcess(*head);
        if (!before) return std::nullopt;
        auto item_id = runnableItem(*before);
        if (!item_id) return std::nullopt;
        Process after = startItem(*before, *item_id, now);
        storeTransition(procs, *before, after, *item_id);
        row.queue_item_id = *item_id;
        row.process_id = after.process_id;
        execs.insertExecution(row);
        QueueItem item = *after.executingItem();
        return StartedItem{std::move(after), std::move(item)};
      },
      [this, phone_id, execution_id](Result<std::optional<StartedItem>> started) {
        auto shared = std::make_shared<Result<std::optional<StartedItem>>>(std::move(started));
        loop_.post([this, phone_id, execution_id, shared] { onStartCommitted(phone_id, execution_id, *shared); });
      });
}

void Executor::onStartCommitted(const std::string& phone_id, const std::string& execution_id,
                                Result<std::optional<StartedItem>> started) {
  if (!started) {
    spdlog::error("exec.start_store_failed phone_id={} error=\"{}\" retrying", phone_id, started.error().message);
    slots_[phone_id].busy = false;
    loop_.startTimer(options_.store_retry, [this, phone_id] { kick(phone_id); });
    return;
  }
  if (!*started) {
    // Nothing to run: the phone idles until something changes. Look again only
    // if something did while this transaction was in flight; an unconditional
    // kick would spin (a store transaction per lap) on every idle phone.
    Slot& slot = slots_[phone_id];
    slot.busy = false;
    if (slot.again) kick(phone_id);
    return;
  }
  launch(**started, execution_id);
}

std::vector<std::string> Executor::commandEnv(const StartedItem& started, const std::string& execution_id,
                                              const std::filesystem::path& exec_dir) const {
  std::vector<std::string> env;
  bool have_path = false;
  bool have_home = false;
  for (const auto& [k, v] : started.item.env) {
    have_path = have_path || k == "PATH";
    have_home = have_home || k == "HOME";
    env.push_back(k + "=" + v);
  }
  if (!have_path) env.emplace_back("PATH=/usr/local/bin:/usr/bin:/bin");
  if (!have_home) env.push_back("HOME=" + home_);
  std::string serial;
  for (const auto& phone : options_.phones) {
    if (phone.id == started.process.phone_id) serial = phone.serial;
  }
  env.push_back("ANDROID_SERIAL=" + serial);
  env.push_back("PHONEFARM_PROCESS_ID=" + started.process.process_id);
  env.push_back("PHONEFARM_QUEUE_ITEM_ID=" + started.item.queue_item_id);
  env.push_back("PHONEFARM_PHONE_ID=" + started.process.phone_id);
  env.push_back("PHONEFARM_ACCOUNT_ID=" + started.process.account_id);
  env.push_back("PHONEFARM_CANCEL_FILE=" + (exec_dir / kCancelFileName).string());
  env.push_back(marker(execution_id));
  return env;
}

void Executor::launch(const StartedItem& started, const std::string& execution_id) {
  ++stats_.started;
  auto e = std::make_unique<Execution>();
  e->execution_id = execution_id;
  e->item_id = started.item.queue_item_id;
  e->process_id = started.process.process_id;
  e->phone_id = started.process.phone_id;
  e->stop_signal = started.item.stop_signal;
  e->dir = options_.state_dir / "executions" / execution_id;

  auto fail = [&](const std::string& why) {
    ++stats_.start_failures;
    spdlog::error("exec.start_failed process_id={} queue_item_id={} execution_id={} error=\"{}\"", e->process_id,
                  e->item_id, execution_id, why);
    e->ending = true;
    e->outcome.note = "failed to start: " + why;
    const std::string item_id = e->item_id;
    executions_[item_id] = std::move(e);
    storeEnd(item_id);
  };

  // The execution directory; the parent is traversable so the work can reach
  // its cancel file.
  std::error_code ec;
  std::filesystem::create_directories(e->dir.parent_path(), ec);
  if (ec) return fail("creating " + e->dir.parent_path().string() + ": " + ec.message());
  ::chmod(e->dir.parent_path().c_str(), 0711);
  if (auto made = makeExecDir(e->dir, gid_); !made) return fail(made.error().message);

  LaunchRequest request;
  request.execution_id = execution_id;
  request.marker = marker(execution_id);
  request.env = {request.marker};
  request.argv = {
      options_.shim_binary.string(), kExecShimSubcommand, "--exec-dir", e->dir.string(), "--run-as", options_.run_as};
  for (auto& kv : commandEnv(started, execution_id, e->dir)) {
    request.argv.emplace_back("--env");
    request.argv.push_back(std::move(kv));
  }
  request.argv.emplace_back("--");
  request.argv.insert(request.argv.end(), started.item.command.begin(), started.item.command.end());

  auto container = containment_.launch(request);
  if (!container) return fail(container.error().message);
  e->container = std::move(*container);
  const ContainerInfo& info = e->container->info();
  spdlog::info("exec.started process_id={} queue_item_id={} execution_id={} runtime={} leader_pid={} phone_id={}",
               e->process_id, e->item_id, execution_id, info.runtime, info.leader_pid, e->phone_id);

  store_.submit<Unit>(
      [execution_id, pid = info.leader_pid, start = info.leader_start_time](store::Db& db) {
        store::ExecutionRepository(db).setExecutionLeader(execution_id, pid, start);
        return Unit{};
      },
      [execution_id](Result<Unit> r) {
        if (!r) spdlog::warn("exec.leader_store_failed execution_id={} error=\"{}\"", execution_id, r.error().message);
      });

  if (started.item.timeout_seconds) {
    const WallMs deadline = *started.item.started_at + *started.item.timeout_seconds * 1000;
    const std::string item_id = e->item_id;
    e->timeout_timer = loop_.startTimer(untilWall(clock_, deadline), [this, item_id] { onTimeout(item_id); });
  }
  attach(std::move(e));
}

// ---------------------------------------------------------------- watching

void Executor::attach(std::unique_ptr<Execution> e) {
  const std::string item_id = e->item_id;
  executions_[item_id] = std::move(e);
  syncWatches(*executions_[item_id]);
  onReady(item_id);  // it may have ended before the watches were armed
}

void Executor::syncWatches(Execution& e) {
  std::vector<int> want = e.container && !e.ending ? e.container->watchFds() : std::vector<int>{};
  for (auto it = e.watches.begin(); it != e.watches.end();) {
    if (std::find(want.begin(), want.end(), it->first) == want.end()) {
      loop_.unwatch(it->second);
      it = e.watches.erase(it);
    } else {
      ++it;
    }
  }
  for (int fd : want) {
    if (e.watches.count(fd) == 0) {
      const std::string item_id = e.item_id;
      e.watches[fd] = loop_.watchReadable(fd, [this, item_id] { onReady(item_id); });
    }
  }
}

void Executor::onReady(const std::string& item_id) {
  Execution* e = find(item_id);
  if (e == nullptr || e->ending) return;
  auto gone = e->container->poll();
  syncWatches(*e);  // e.g. stop watching a reaped leader's pidfd, which stays readable
  if (!gone) {
    spdlog::warn("exec.watch_failed queue_item_id={} error=\"{}\"", item_id, gone.error().message);
    return;
  }
  if (*gone) end(*e);
}

// ---------------------------------------------------------------- ending

void Executor::end(Execution& e) {
  e.ending = true;
  syncWatches(e);
  for (auto* timer : {&e.timeout_timer, &e.escalation_timer, &e.stuck_timer}) {
    if (*timer != 0) loop_.cancelTimer(std::exchange(*timer, 0));
  }
  ItemOutcome& o = e.outcome;
  auto status = readExecStatus(e.dir);
  if (status && *status) {
    o.exit_code = (*status)->exit_code;
    o.signal = (*status)->signal;
    if ((*status)->error) o.note = (*status)->error;
  } else if (e.kill_issued) {
    o.signal = "SIGKILL";  // the kill took the shim too, before it could write
  } else {
    ++stats_.lost;
    o.note = "lost: the execution ended without an exit status from the exec shim";
    if (!status) *o.note += " (" + status.error().message + ")";
  }
  o.timed_out = e.timed_out;
  o.cancelled = e.item_cancel;
  if (e.stuck_note && !o.note) o.note = e.stuck_note;
  storeEnd(e.item_id);
}

void Executor::storeEnd(const std::string& item_id) {
  Execution* e = find(item_id);
  if (e == nullptr) return;
  const WallMs now = clock_.wallNowMs();
  store_.submit<Unit>(
      [process_id = e->process_id, item_id, execution_id = e->execution_id, outcome = e->outcome, now](store::Db& db) {
        store::ProcessRepository procs(db);
        store::ExecutionRepository execs(db);
        auto before = procs.loadProcess(process_id);
        if (before) {
          for (const auto& item : before->items) {
            if (item.queue_item_id == item_id && item.status == ItemStatus::kExecuting) {
              Process after = finishItem(*before, item_id, outcome, now);
              storeTransition(procs, *before, after, item_id);
            }
          }
        }
        execs.finishExecution(execution_id, now, describeOutcome(outcome));
        execs.deleteEscalation(item_id);
        return Unit{};
      },
      [this, item_id](Result<Unit> r) {
        Status st = r ? okStatus() : Status(r.error());
        loop_.post([this, item_id, st] { onEndCommitted(item_id, st); });
      });
}

void Executor::onEndCommitted(const std::string& item_id, Status committed) {
  Execution* e = find(item_id);
  if (e == nullptr) return;
  if (!committed) {
    spdlog::error("exec.end_store_failed queue_item_id={} error=\"{}\" retrying", item_id, committed.error().message);
    loop_.startTimer(options_.store_retry, [this, item_id] { storeEnd(item_id); });
    return;
  }
  if (e->container) {
    if (auto st = e->container->remove(); !st) {
      spdlog::warn("exec.cleanup_failed execution_id={} error=\"{}\"", e->execution_id, st.error().message);
    }
  }
  ++stats_.finished;
  spdlog::info("exec.ended process_id={} queue_item_id={} execution_id={} outcome=\"{}\"{}", e->process_id, item_id,
               e->execution_id, describeOutcome(e->outcome), e->outcome.timed_out ? " timed_out=true" : "");
  const std::string phone_id = e->phone_id;
  executions_.erase(item_id);
  releaseSlot(phone_id);
  checkIdle();
}

void Executor::releaseSlot(const std::string& phone_id) {
  Slot& slot = slots_[phone_id];
  slot.busy = false;
  // The phone's next item (or the next process) may start now.
  kick(phone_id);
}

// ---------------------------------------------------------------- terminating

Status Executor::kill(Execution& e, const std::string& why) {
  Status st = e.container ? e.container->kill() : okStatus();
  e.kill_issued = true;
  ++stats_.kills;
  if (e.escalation_timer != 0) loop_.cancelTimer(std::exchange(e.escalation_timer, 0));
  if (e.stuck_timer == 0) {
    const std::string item_id = e.item_id;
    e.stuck_timer = loop_.startTimer(options_.stuck_after, [this, item_id] { onStuckCheck(item_id); });
  }
  if (st) {
    spdlog::info("exec.kill process_id={} queue_item_id={} execution_id={} why={}", e.process_id, e.item_id,
                 e.execution_id, why);
  } else {
    spdlog::error("exec.kill_failed process_id={} queue_item_id={} why={} error=\"{}\"", e.process_id, e.item_id, why,
                  st.error().message);
  }
  return st;
}

cancel::TerminationResult Executor::apply(const cancel::CancelPlan& plan) {
  cancel::TerminationResult r;
  r.status = plan.termination;
  if (plan.action == cancel::TerminationAction::kNone || !plan.executing_item_id) return r;
  Execution* e = find(*plan.executing_item_id);
  if (e == nullptr) {
    r.status = cancel::TerminationStatus::kFailed;
    r.error = "queue item " + *plan.executing_item_id + " has no execution on this agent";
    return r;
  }
  if (e->container) r.container = e->container->info().toJson();
  if (plan.audit.endpoint == "queue_item") e->item_cancel = true;
  if (e->ending) {
    // The tree is already gone: whatever was asked has nothing left to act on.
    r.terminate_issued = plan.action == cancel::TerminationAction::kKill;
    return r;
  }
  using cancel::TerminationAction;
  switch (plan.action) {
    case TerminationAction::kNotify:
    case TerminationAction::kNotifyAndSchedule: {
      boost::json::object notice{{"reason", plan.audit.reason},
                                 {"strategy", toString(plan.audit.strategy)},
                                 {"requested_by", plan.audit.requested_by},
                                 {"requested_at", formatRfc3339(plan.audit.requested_at)}};
      if (plan.force_at) notice["force_at"] = formatRfc3339(*plan.force_at);
      auto file = writeCancelFile(e->dir, notice);
      Status signalled = okStatus();
      if (e->stop_signal != "none") {
        if (auto sig = signalNumber(e->stop_signal)) {
          signalled = e->container->signalLeader(*sig);
          if (signalled) (void)e->container->signalLeader(SIGCONT);
        }
      }
      if (!file) r.error = file.error().message;
      if (!signalled && signalled.error().kind != ErrorKind::kNotFound) {
        r.error = (r.error ? *r.error + "; " : std::string()) + signalled.error().message;
      }
      if (!file && !signalled && plan.action == TerminationAction::kNotify)
        r.status = cancel::TerminationStatus::kFailed;
      spdlog::info("exec.notice process_id={} queue_item_id={} stop_signal={} cancel_file={}", e->process_id,
                   e->item_id, e->stop_signal, file ? "written" : "failed");
      if (plan.action == TerminationAction::kNotifyAndSchedule && plan.force_at) {
        armEscalation(*e, untilWall(clock_, *plan.force_at));
      }
      break;
    }
    case TerminationAction::kReschedule:
      if (plan.force_at) armEscalation(*e, untilWall(clock_, *plan.force_at));
      break;
    case TerminationAction::kKill: {
      auto st = kill(*e, "cancel");
      if (!st) {
        r.status = cancel::TerminationStatus::kFailed;
        r.error = st.error().message;
      } else {
        r.terminate_issued = true;
        r.phone_reset = resets_.requestReset(e->phone_id, "forced_cancel");
      }
      break;
    }
    case TerminationAction::kNone:
      break;
  }
  return r;
}

void Executor::armEscalation(Execution& e, std::chrono::milliseconds delay) {
  if (e.escalation_timer != 0) loop_.cancelTimer(e.escalation_timer);
  const std::string item_id = e.item_id;
  e.escalation_timer = loop_.startTimer(delay, [this, item_id] { onEscalation(item_id); });
  spdlog::info("exec.escalation_armed queue_item_id={} in_ms={}", item_id, delay.count());
}

void Executor::onEscalation(const std::string& item_id) {
  Execution* e = find(item_id);
  if (e == nullptr) return;
  e->escalation_timer = 0;
  if (e->ending) return;
  ++stats_.escalations_fired;
  if (kill(*e, "escalation")) (void)resets_.requestReset(e->phone_id, "forced_cancel");
  store_.submit<Unit>(
      [item_id, now = clock_.wallNowMs()](store::Db& db) {
        store::ExecutionRepository(db).markEscalationFired(item_id, now);
        return Unit{};
      },
      [](Result<Unit>) {});
}

void Executor::onTimeout(const std::string& item_id) {
  Execution* e = find(item_id);
  if (e == nullptr) return;
  e->timeout_timer = 0;
  if (e->ending) return;
  ++stats_.timeouts;
  e->timed_out = true;
  spdlog::warn("exec.timeout process_id={} queue_item_id={}", e->process_id, item_id);
  if (kill(*e, "timeout")) (void)resets_.requestReset(e->phone_id, "timeout");
}

void Executor::onStuckCheck(const std::string& item_id) {
  Execution* e = find(item_id);
  if (e == nullptr) return;
  e->stuck_timer = 0;
  if (e->ending) return;
  const auto pids = e->container ? e->container->pids() : std::vector<pid_t>{};
  if (pids.empty()) {
    onReady(item_id);  // emptied meanwhile; let the watch path conclude
    return;
  }
  std::string list;
  for (pid_t pid : pids) list += (list.empty() ? "" : " ") + std::to_string(pid);
  // Keep killing: a task leaving uninterruptible sleep dies at the next one.
  (void)e->container->kill();
  e->stuck_timer = loop_.startTimer(options_.stuck_after, [this, item_id] { onStuckCheck(item_id); });
  if (e->stuck_note) return;  // reported once; still watched
  ++stats_.stuck;
  e->stuck_note = "stuck: " + std::to_string(pids.size()) + " process(es) still alive " +
                  std::to_string(options_.stuck_after.count() / 1000) + " s after the kill (pids " + list + ")";
  spdlog::warn("exec.stuck process_id={} queue_item_id={} pids=[{}]", e->process_id, item_id, list);
  store_.submit<Unit>(
      [process_id = e->process_id, item_id, note = *e->stuck_note](store::Db& db) {
        store::ProcessRepository procs(db);
        if (auto p = procs.loadProcess(process_id)) {
          for (auto item : p->items) {
            if (item.queue_item_id == item_id && item.status == ItemStatus::kExecuting) {
              item.note = note;
              procs.updateItemState(item);
            }
          }
        }
        return Unit{};
      },
      [](Result<Unit>) {});
}

// ---------------------------------------------------------------- recovery

void Executor::start(std::function<void()> ready) {
  const WallMs now = clock_.wallNowMs();
  store_.submit<Recovery>(
      [now](store::Db& db) {
        store::ProcessRepository procs(db);
        store::ExecutionRepository execs(db);
        Recovery rec;
        for (auto& row : execs.openExecutions()) {
          auto p = procs.loadProcess(row.process_id);
          const QueueItem* item = p ? p->executingItem() : nullptr;
          if (item == nullptr || item->queue_item_id != row.queue_item_id) {
            execs.finishExecution(row.execution_id, now, "stale");  // the item ended some other way
            continue;
          }
          rec.open.push_back({std::move(row), p->phone_id, *item});
        }
        rec.escalations = execs.pendingEscalations();
        // A cancel whose tree was gone but not yet recorded as such.
        store::ProcessFilter filter;
        filter.status = ProcessStatus::kCancelling;
        filter.limit = 100000;
        for (auto& p : procs.listProcesses(filter).processes) {
          if (p.executingItem() != nullptr) continue;
          Process after = p;
          after.status = ProcessStatus::kCancelled;
          after.updated_at = now;
          procs.updateProcessState(after);
          ++rec.settled;
        }
        return rec;
      },
      [this, ready = std::move(ready)](Result<Recovery> rec) {
        auto shared = std::make_shared<Result<Recovery>>(std::move(rec));
        loop_.post([this, shared, ready] {
          if (!*shared) {
            spdlog::critical("exec.recovery_failed error=\"{}\"", shared->error().message);
          } else {
            applyRecovery(std::move(**shared));
          }
          started_ = true;
          for (auto& [phone_id, slot] : slots_) {
            if (!slot.busy) kick(phone_id);
          }
          if (ready) ready();
        });
      });
}

void Executor::applyRecovery(Recovery rec) {
  for (auto& open : rec.open) {
    auto e = std::make_unique<Execution>();
    e->execution_id = open.row.execution_id;
    e->item_id = open.row.queue_item_id;
    e->process_id = open.row.process_id;
    e->phone_id = open.phone_id;
    e->stop_signal = open.item.stop_signal;
    e->dir = options_.state_dir / "executions" / e->execution_id;
    slots_[e->phone_id].busy = true;
    ++stats_.adopted;
    ContainerInfo info{open.row.execution_id, open.row.runtime, open.row.cgroup,
                       static_cast<pid_t>(open.row.leader_pid.value_or(0)), open.row.leader_start_time};
    auto container = containment_.adopt(info, marker(e->execution_id));
    spdlog::info("exec.adopted process_id={} queue_item_id={} execution_id={} runtime={} tree={}", e->process_id,
                 e->item_id, e->execution_id, info.runtime, container ? "alive" : "gone");
    if (open.item.timeout_seconds && open.item.started_at) {
      const WallMs deadline = *open.item.started_at + *open.item.timeout_seconds * 1000;
      const std::string item_id = e->item_id;
      e->timeout_timer = loop_.startTimer(untilWall(clock_, deadline), [this, item_id] { onTimeout(item_id); });
    }
    if (container) {
      e->container = std::move(*container);
      attach(std::move(e));
    } else {
      const std::string item_id = e->item_id;
      executions_[item_id] = std::move(e);
      end(*executions_[item_id]);
    }
  }
  for (const auto& row : rec.escalations) {
    Execution* e = find(row.queue_item_id);
    if (e == nullptr || e->ending) continue;  // its end transaction deletes the row
    e->item_cancel = true;                    // finishItem keeps a cancelling process's status anyway
    cancel::EscalationDeadline deadline{row.force_at, row.force_at_boot_ns, row.boot_id};
    armEscalation(*e, cancel::timeLeft(deadline, clock_, options_.boot_id));
  }
  if (!rec.open.empty() || rec.settled > 0 || !rec.escalations.empty()) {
    spdlog::info("exec.recovered executions={} escalations={} settled_cancels={}", rec.open.size(),
                 rec.escalations.size(), rec.settled);
  }
}

// ---------------------------------------------------------------- shutdown, reporting

std::vector<std::string> Executor::executingProcessIds() const {
  std::vector<std::string> ids;
  for (const auto& [item_id, e] : executions_) ids.push_back(e->process_id);
  return ids;
}

std::size_t Executor::pendingEscalations() const {
  std::size_t n = 0;
  for (const auto& [item_id, e] : executions_) n += e->escalation_timer != 0 ? 1 : 0;
  return n;
}

std::optional<std::pair<std::string, std::string>> Executor::currentOf(const std::string& phone_id) const {
  for (const auto& [item_id, e] : executions_) {
    if (e->phone_id == phone_id) return std::make_pair(e->process_id, item_id);
  }
  return std::nullopt;
}

void Executor::whenIdle(std::chrono::milliseconds timeout, std::function<void()> done) {
  if (executions_.empty()) return done();
  const os::EventLoop::Id timer = loop_.startTimer(timeout, [this] {
    auto waiters = std::move(idle_waiters_);
    idle_waiters_.clear();
    spdlog::warn("exec.shutdown_wait_expired executions_left={}", executions_.size());
    for (auto& [id, fn] : waiters) fn();
  });
  idle_waiters_.emplace_back(timer, std::move(done));
}

void Executor::checkIdle() {
  if (!executions_.empty()) return;
  auto waiters = std::move(idle_waiters_);
  idle_waiters_.clear();
  for (auto& [id, fn] : waiters) {
    loop_.cancelTimer(id);
    fn();
  }
}

boost::json::object Executor::describe() const {
  boost::json::object o = containment_.describe();
  o["run_as"] = options_.run_as;
  o["executing"] = executions_.size();
  o["can_run_work"] = !unavailable_.has_value();
  if (unavailable_) o["unavailable"] = *unavailable_;
  return o;
}

std::vector<pid_t> Executor::leaderPids() const {
  std::vector<pid_t> pids;
  for (const auto& [item_id, e] : executions_) {
    if (e->container) pids.push_back(e->container->info().leader_pid);
  }
  return pids;
}

}  // namespace phonefarm::exec
