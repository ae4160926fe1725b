// The daemon's wiring and lifecycle.
#include "agent/daemon/daemon.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "agent/api/api_handler.hpp"
#include "agent/cancel/cancel_service.hpp"
#include "agent/cancel/escalation_deadline.hpp"
#include "agent/cancel/fault_injection.hpp"
#include "agent/daemon/file_limit.hpp"
#include "agent/daemon/listen_socket.hpp"
#include "agent/daemon/retention_sweeper.hpp"
#include "agent/daemon/state_dir_lock.hpp"
#include "agent/exec/command_policy.hpp"
#include "agent/exec/containment.hpp"
#include "agent/exec/executor.hpp"
#include "agent/exec/process_group_killer.hpp"
#include "agent/exec/systemd_containment.hpp"
#include "agent/exec/tree_removal_as_user.hpp"
#include "agent/http/auth.hpp"
#include "agent/http/http_server.hpp"
#include "agent/phone/adb_client.hpp"
#include "agent/phone/adb_probe.hpp"
#include "agent/phone/blocking_runner.hpp"
#include "agent/phone/device_reconciler.hpp"
#include "agent/phone/device_tracker.hpp"
#include "agent/phone/heal_service.hpp"
#include "agent/phone/inventory.hpp"
#include "agent/phone/reset_service.hpp"
#include "agent/phone/usb_backend.hpp"
#include "common/config/tokens.hpp"
#include "common/metrics/metrics.hpp"
#include "common/os/asio_event_loop.hpp"
#include "common/os/disk_guard.hpp"
#include "common/os/thread_name.hpp"
#include "common/store/event_feed.hpp"
#include "common/store/event_retention.hpp"
#include "common/store/phone_repository.hpp"
#include "common/store/store.hpp"

namespace phonefarm {
namespace {

// How often the disk guard looks at the free space of state_dir.
constexpr std::chrono::milliseconds kDiskCheckPeriod{1000};

// The metrics GET /metrics pulls at scrape time, on the I/O thread (where the
// executor's state lives).
// Retention and the disk guard (pulled at scrape time, on the I/O thread).
void collectStorageMetrics(metrics::Registry& r, const RetentionSweeper& retention, os::DiskGuard& disk) {
  const RetentionStats& rs = retention.stats();
  r.counter("phonefarm_retention_sweeps_total", "Retention sweeps finished.").set(static_cast<double>(rs.sweeps));
  const char* rows_help = "Rows deleted by retention, by table.";
  const std::pair<const char*, std::int64_t> rows[] = {
      {"processes", rs.rows.processes},     {"queue_items", rs.rows.queue_items},
      {"executions", rs.rows.executions},   {"cancel_audit", rs.rows.cancel_audit},
      {"escalations", rs.rows.escalations}, {"phone_resets", rs.rows.phone_resets}};
  for (const auto& [table, n] : rows) {
    r.counter("phonefarm_retention_rows_deleted_total", rows_help, {{"table", table}}).set(static_cast<double>(n));
  }
  r.counter("phonefarm_retention_execution_dirs_removed_total", "Execution directories removed by retention.")
      .set(static_cast<double>(rs.dirs_removed));
  r.counter("phonefarm_retention_execution_dir_failures_total",
            "Execution directories retention could not remove completely (see retention.dir_failed).")
      .set(static_cast<double>(rs.dir_failures));
  const char* bytes_help = "Bytes given back to the file system by retention, by source.";
  r.counter("phonefarm_retention_bytes_reclaimed_total", bytes_help, {{"source", "execution_dirs"}})
      .set(static_cast<double>(rs.dir_bytes));
  r.counter("phonefarm_retention_bytes_reclaimed_total", bytes_help, {{"source", "database"}})
      .set(static_cast<double>(rs.vacuum_bytes));
  r.gauge("phonefarm_retention_max_job_seconds", "Longest retention store job, i.e. writer held (seconds).")
      .set(rs.max_job_seconds);

  const os::DiskState ds = disk.state();
  r.gauge("phonefarm_disk_free_bytes", "Bytes available on the file system of state_dir.")
      .set(static_cast<double>(ds.free_bytes));
  r.gauge("phonefarm_disk_min_free_bytes", "storage.min_free_bytes: below it new submissions are refused.")
      .set(static_cast<double>(disk.options().min_free_bytes));
  r.gauge("phonefarm_disk_low", "Whether new submissions are refused for lack of disk space (1) or not (0).")
      .set(ds.low ? 1 : 0);
  r.gauge("phonefarm_disk_reserve_bytes", "Bytes of the store's reserve (ballast file) held now.")
      .set(static_cast<double>(ds.reserve_held));
  r.counter("phonefarm_disk_reserve_releases_total", "Times the store's reserve was released (disk full).")
      .set(static_cast<double>(ds.reserve_releases));
  r.counter("phonefarm_disk_refused_submissions_total", "Submissions refused with 503 for lack of disk space.")
      .set(static_cast<double>(ds.refused_submissions));
}

// GET /readyz `adb`: up or not, the versions, and what holds the port when it
// is not a server the agent can rely on.
boost::json::object describeAdb(const phone::Inventory& inventory, const phone::DeviceTracker* tracker) {
  boost::json::object o{{"server_up", inventory.serverUp()}};
  const phone::AdbServerState st = tracker != nullptr ? tracker->serverState() : phone::AdbServerState{};
  auto orNull = [](const std::string& v) { return v.empty() ? boost::json::value(nullptr) : boost::json::value(v); };
  o["server_version"] = orNull(st.server_version);
  o["expected_version"] = orNull(st.expected_version);
  o["fault"] = st.fault == phone::AdbServerFault::kNone
                   ? boost::json::value(nullptr)
                   : boost::json::value(
                         boost::json::object{{"reason", phone::adbServerFaultName(st.fault)}, {"detail", st.detail}});
  return o;
}

boost::json::object describeDisk(os::DiskGuard& disk) {
  const os::DiskState ds = disk.state();
  boost::json::object o{{"free_bytes", ds.free_bytes},
                        {"total_bytes", ds.total_bytes},
                        {"min_free_bytes", disk.options().min_free_bytes},
                        {"low", ds.low},
                        {"reserve_bytes", ds.reserve_held},
                        {"reserve_released", ds.reserve_released}};
  if (ds.error) o["error"] = *ds.error;
  return o;
}

void collectMetrics(metrics::Registry& r, const exec::Executor& executor, const store::Store& store,
                    const phone::Inventory& inventory, const phone::ResetService& resets,
                    const phone::HealService* heal, const http::HttpServer& server,
                    const phone::DeviceTracker* tracker) {
  auto counter = [&r](const char* name, const char* help, std::uint64_t v) {
    r.counter(name, help).set(static_cast<double>(v));
  };
  auto gauge = [&r](const char* name, const char* help, double v, const metrics::Labels& labels = {}) {
    r.gauge(name, help, labels).set(v);
  };
  const exec::ExecutorStats& es = executor.stats();
  counter("phonefarm_executor_started_total", "Queue items the executor started.", es.started);
  counter("phonefarm_executor_finished_total", "Queue items that finished (any terminal state).", es.finished);
  counter("phonefarm_executor_kills_total", "Container kills issued (hard cancels, escalations, timeouts).", es.kills);
  counter("phonefarm_executor_timeouts_total", "Queue items stopped by their timeout_seconds.", es.timeouts);
  counter("phonefarm_executor_escalations_fired_total", "soft_then_force escalations that fired.",
          es.escalations_fired);
  counter("phonefarm_executor_stuck_total", "Executions with processes still alive after a kill.", es.stuck);
  counter("phonefarm_executor_adopted_total", "Executions adopted from a previous agent run at start-up.", es.adopted);
  counter("phonefarm_executor_lost_total", "Executions that ended without an exit status from the exec shim.", es.lost);
  counter("phonefarm_executor_start_failures_total", "Queue items that failed to start.", es.start_failures);
  const char* dropped_help = "Bytes of work output dropped past work.log_max_bytes, counted when the item ends.";
  r.counter("phonefarm_log_bytes_dropped_total", dropped_help, {{"stream", "stdout"}})
      .set(static_cast<double>(es.log_bytes_dropped_stdout));
  r.counter("phonefarm_log_bytes_dropped_total", dropped_help, {{"stream", "stderr"}})
      .set(static_cast<double>(es.log_bytes_dropped_stderr));
  gauge("phonefarm_executor_executing_items", "Queue items executing now.",
        static_cast<double>(executor.executingProcessIds().size()));
  gauge("phonefarm_executor_escalations_pending", "soft_then_force escalations armed and not fired yet.",
        static_cast<double>(executor.pendingEscalations()));

  const store::StoreStats ss = store.stats();
  counter("phonefarm_store_jobs_total", "Store jobs completed (ok or error).", ss.jobs);
  counter("phonefarm_store_commits_total", "Store transactions committed (one per batch).", ss.commits);
  gauge("phonefarm_store_max_batch", "Largest number of jobs committed in one batch.",
        static_cast<double>(ss.max_batch));
  counter("phonefarm_store_checkpoints_total", "SQLite WAL checkpoints.", ss.checkpoints);

  // Phones by adb_state (the states seen) and by health (every health value).
  std::map<std::string, int> by_state;
  std::map<std::string, int> by_health{{phone::kHealthReady, 0},
                                       {phone::kHealthBusy, 0},
                                       {phone::kHealthResetting, 0},
                                       {phone::kHealthNeedsAttention, 0}};
  for (const auto& p : inventory.phones()) {
    ++by_state[p.adb_state];
    ++by_health[phone::healthOf(p, executor.currentOf(p.config.id).has_value())];
  }
  for (const auto& [state, n] : by_state)
    gauge("phonefarm_phones_by_adb_state", "Configured phones by adb_state.", n, {{"adb_state", state}});
  for (const auto& [health, n] : by_health)
    gauge("phonefarm_phones_by_health", "Configured phones by health.", n, {{"health", health}});
  gauge("phonefarm_adb_server_up", "Whether the adb server answers (1) or not (0).", inventory.serverUp() ? 1 : 0);
  if (tracker != nullptr) {
    const phone::DeviceTrackerStats ts = tracker->stats();
    counter("phonefarm_adb_server_starts_total", "adb servers the agent started (the server was not running).",
            ts.server_starts);
    counter("phonefarm_adb_server_start_failures_total", "Failed attempts to start the adb server.",
            ts.server_start_failures);
    counter("phonefarm_adb_server_disconnects_total", "Times the device stream from the adb server broke.",
            ts.disconnects);
    counter("phonefarm_adb_server_replacements_total",
            "adb servers of another version the agent stopped and replaced (adb.replace_foreign_server).",
            ts.server_replacements);
    counter("phonefarm_adb_server_replace_failures_total", "Failed attempts to replace a foreign adb server.",
            ts.server_replace_failures);
    const phone::AdbServerState st = tracker->serverState();
    for (const auto fault : {phone::AdbServerFault::kForeignVersion, phone::AdbServerFault::kPortHog}) {
      gauge("phonefarm_adb_server_fault",
            "Whether the adb server port holds a server of another version or a program that is not adb (1) or "
            "not (0), by reason.",
            st.fault == fault ? 1 : 0, {{"reason", phone::adbServerFaultName(fault)}});
    }
    if (!st.server_version.empty() || !st.expected_version.empty()) {
      gauge("phonefarm_adb_server_version_info",
            "Always 1: the adb server's host:version and the agent's adb's (none = not known).", 1,
            {{"server_version", st.server_version.empty() ? "none" : st.server_version},
             {"expected_version", st.expected_version.empty() ? "none" : st.expected_version}});
    }
  }

  const phone::ResetStats rs = resets.stats();
  counter("phonefarm_resets_started_total", "Phone resets started.", rs.started);
  counter("phonefarm_resets_joined_total", "Reset requests that joined a running reset.", rs.joined);
  counter("phonefarm_resets_succeeded_total", "Phone resets that succeeded.", rs.succeeded);
  counter("phonefarm_resets_failed_total", "Phone resets that failed.", rs.failed);
  if (heal != nullptr) {
    const phone::HealStats& h = heal->stats();
    counter("phonefarm_heal_drops_total", "Phones that left device state on their own (or failed a probe).", h.drops);
    counter("phonefarm_heal_attempts_total", "Automatic heals (reset ladders with trigger auto) started.", h.attempts);
    counter("phonefarm_heal_healed_total", "Automatic heals that brought the phone back.", h.healed);
    counter("phonefarm_heal_failed_total", "Automatic heals that did not bring the phone back.", h.failed);
    counter("phonefarm_heal_probes_total", "Liveness probes (shell echo) that ended.", h.probes);
    counter("phonefarm_heal_probe_failures_total", "Liveness probes the phone's adbd did not answer.",
            h.probe_failures);
    counter("phonefarm_heal_quarantines_total", "Phones quarantined for flapping.", h.quarantines);
    counter("phonefarm_heal_unauthorized_total", "Phones found unauthorized (USB debugging prompt).", h.unauthorized);
    counter("phonefarm_heal_hub_events_total", "Hub events: two or more phones of one hub dropped together.",
            h.hub_events);
    counter("phonefarm_heal_hub_power_cycles_total", "Hub upstream-port power cycles started by hub events.",
            h.hub_power_cycles);
    counter("phonefarm_heal_hub_power_cycle_failures_total", "Hub power cycles that failed.",
            h.hub_power_cycle_failures);
  }
  std::map<std::string, int> by_attention;
  for (const auto& p : inventory.phones()) {
    if (p.attention) ++by_attention[p.attention->reason];
  }
  for (const char* reason :
       {phone::kAttentionUnauthorized, phone::kAttentionFlapping, phone::kAttentionResetFailed, phone::kAttentionHub}) {
    gauge("phonefarm_heal_phones_needing_attention", "Phones that need a technician, by reason.", by_attention[reason],
          {{"reason", reason}});
  }

  const http::HttpServerStats hs = server.stats();
  counter("phonefarm_http_connections_accepted_total", "HTTP connections accepted.", hs.accepted);
  counter("phonefarm_http_connections_rejected_total",
          "HTTP connections closed at once (max_connections, every connection busy).", hs.rejected_over_cap);
  counter("phonefarm_http_connections_evicted_total",
          "Idle HTTP connections closed to admit a new one at max_connections.", hs.evicted_idle);
  gauge("phonefarm_http_active_connections", "Open HTTP connections.", static_cast<double>(hs.active_connections));
}

// The one-line summary systemd shows in `systemctl status` (STATUS=).
std::string statusLine(const phone::Inventory& inventory, const exec::Executor& executor) {
  std::size_t total = 0;
  std::map<std::string, std::size_t> by_health;
  for (const auto& p : inventory.phones()) {
    ++total;
    ++by_health[phone::healthOf(p, executor.currentOf(p.config.id).has_value())];
  }
  return fmt::format("phones ready {}/{}, busy {}, resetting {}, attention {}; executing {}",
                     by_health[phone::kHealthReady], total, by_health[phone::kHealthBusy],
                     by_health[phone::kHealthResetting], by_health[phone::kHealthNeedsAttention],
                     executor.executingProcessIds().size());
}

// Runs fn on the loop now and then every `period`, each run arming the next
// one: a wedged loop stops running it (which is the point for WATCHDOG=1).
// Must be started on the loop thread; pending timers die with the loop.
class Periodic {
 public:
  Periodic(os::EventLoop& loop, std::chrono::milliseconds period, std::function<void()> fn)
      : loop_(loop), period_(period), fn_(std::move(fn)) {}
  void start() { fire(); }

 private:
  void fire() {
    fn_();
    loop_.startTimer(period_, [this] { fire(); });
  }

  os::EventLoop& loop_;
  std::chrono::milliseconds period_;
  std::function<void()> fn_;
};

// Runs the loop on its own thread, pf-io, until it stops; an exception that
// escapes the loop is rethrown here. The main thread keeps the process's name
// (what ps, pgrep and the journal show) and only waits.
void runLoopThread(os::AsioEventLoop& loop) {
  std::exception_ptr failure;
  std::thread io([&loop, &failure] {
    os::setCurrentThreadName("pf-io");
    try {
      loop.run();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  io.join();
  if (failure) std::rethrow_exception(failure);
}

// The test hook PHONEFARM_FAULT (README "Test hooks"), read once: a fault
// point where the agent dies on purpose. Never set in production; said
// loudly when it is.
cancel::Fault faultFromEnvironment() {
  const char* value = std::getenv("PHONEFARM_FAULT");
  if (value == nullptr || *value == '\0') return cancel::Fault::kNone;
  const auto fault = cancel::parseFault(value);
  if (!fault) {
    spdlog::warn("agent.fault_unknown value=\"{}\" PHONEFARM_FAULT names no fault point; ignored", value);
    return cancel::Fault::kNone;
  }
  spdlog::warn(
      "agent.fault_injection fault={} PHONEFARM_FAULT is set: this agent will exit({}) at that point (a test "
      "hook, never for production)",
      cancel::toString(*fault), cancel::kFaultExitCode);
  return *fault;
}

}  // namespace

int Daemon::run() {
  std::signal(SIGPIPE, SIG_IGN);
  // First: the passed socket becomes close-on-exec before anything can start
  // a child, and a mismatched address stops the agent before it touches state.
  const std::optional<int> activated = takeActivatedListener(config_.listen);
  const cancel::Fault fault = faultFromEnvironment();
  ensureFileLimit(config_.http.max_connections);
  // Work as the agent's own uid could signal the agent and the shims.
  if (auto self = exec::checkRunAsNotSelf(config_.work.run_as, ::geteuid())) throw ConfigError(*self);
  // A prefix the work user can write would let a job swap a command between
  // its check and its exec: refuse to start (check-config says the same).
  if (auto writable = exec::checkPrefixesNotWritableBy(config_.work.allowed_command_prefixes, config_.work.run_as)) {
    throw ConfigError(*writable);
  }
  StateDirLock lock(config_.state_dir);
  http::TokenRegistry tokens(TokenSet::loadFile(config_.tokens_file));
  spdlog::info("auth.tokens_loaded file={} tokens={}", config_.tokens_file.string(), tokens.size());
  if (tokens.size() == 0)
    spdlog::warn("auth.no_tokens file={} every authenticated request will get 401", config_.tokens_file.string());

  // The one event loop: HTTP, the executor's timers and watches, signals.
  // Declared before everything that posts to it (the store's callbacks
  // included), so it is destroyed last.
  os::AsioEventLoop loop;

  // Metrics that components push as they happen (requests, cancels, store
  // commits, reset steps); the rest is pulled at scrape time (collectMetrics).
  metrics::Registry pushed_metrics;
  // Free space of state_dir, and the store's reserve there (a ballast the
  // store may spend when a job has filled the disk).
  os::DiskGuard disk({config_.state_dir, config_.storage.min_free_bytes, config_.storage.reserve_bytes});
  disk.check();
  store::StoreOptions store_options;
  store_options.path = config_.state_dir / "agent.db";
  store_options.metrics = &pushed_metrics;
  store_options.on_disk_full = [&disk] { return disk.releaseReserve(); };
  // GET /events reads what each commit appended to the event log (its own
  // thread and connection); it opens once the store has migrated.
  store::EventFeed events(store::EventFeedOptions{store_options.path, config_.events.stream_buffer});
  store_options.on_commit = [&events] { events.notifyCommitted(); };
  store::Store store(store_options);
  spdlog::info("store.open path={} schema_version={}", (config_.state_dir / "agent.db").string(),
               store.schemaVersion());
  events.start();

  SystemClock clock;
  store::EventRetention event_retention(
      store, loop, clock, store::EventRetentionOptions{config_.events.retention, config_.events.max_events});
  const std::string boot_id = cancel::readBootId();
  const exec::WorkLimits work_limits{config_.work.pids_max, config_.work.memory_max, config_.work.cpu_weight};
  auto makeDirect = [this, work_limits] { return exec::makeContainment(config_.work.cgroup_root, work_limits); };
  // [work] launcher: the job units under the packaged service, the agent's
  // own cgroup subtree otherwise.
  auto containment = config_.work.launcher == WorkLauncher::kSystemd
                         ? exec::makeSystemdContainment(exec::makeSystemBusJobUnits(), work_limits, makeDirect)
                         : makeDirect();
  spdlog::info("exec.containment {}", boost::json::serialize(containment->describe()));

  std::unique_ptr<api::ApiHandler> api;
  auto server_options = http::makeHttpServerOptions(config_.listen, config_.http);
  server_options.listen_fd = activated.value_or(-1);
  server_options.preflight = [&api](const http::HttpRequest& head) { return api->preflight(head); };
  http::HttpServer server(
      loop, std::move(server_options),
      [&api](http::HttpRequest req, http::Responder respond) { api->handle(std::move(req), std::move(respond)); },
      [&loop] { loop.stop(); });  // HTTP has drained: the agent stops

  exec::ExecutorOptions exec_options;
  // Absolute: the exec shim insists on an absolute --exec-dir, and a relative
  // state_dir (--dev's ./var) must not depend on anyone's working directory.
  exec_options.state_dir = std::filesystem::absolute(config_.state_dir);
  exec_options.run_as = config_.work.run_as;
  exec_options.allowed_command_prefixes = config_.work.allowed_command_prefixes;
  exec_options.allowed_env = config_.work.allowed_env;
  exec_options.log_max_bytes = config_.work.log_max_bytes;
  exec_options.shim_holds_privileges = config_.work.launcher == WorkLauncher::kSystemd;
  exec_options.shim_binary = std::filesystem::read_symlink("/proc/self/exe");
  exec_options.phones = config_.phones;
  exec_options.boot_id = boot_id;
  // The rack: the adb server's view of the phones, and the reset ladder.
  phone::Inventory inventory(config_.phones);
  const phone::AdbEndpoint adb_endpoint{config_.adb.server_host, config_.adb.server_port};
  phone::AdbClient adb(adb_endpoint);
  phone::AdbProbe adb_probe(adb, std::chrono::milliseconds(1000));  // GET /debug; joined before adb and server go
  auto usb = phone::makeLibusbBackend();
  exec::Executor* executor_ptr = nullptr;  // set below; reset workers announce phones through it
  auto announce = [&loop, &executor_ptr](const std::string& phone_id) {
    loop.post([&executor_ptr, phone_id] {
      if (executor_ptr != nullptr) executor_ptr->phoneChanged(phone_id);
    });
  };
  phone::ResetService resets(config_, store, clock, loop, inventory, adb, *usb, announce);
  resets.restoreHealth();
  // From here on every change of a phone's attention is stored, so its
  // reason survives a restart (restoreHealth above reads it back).
  inventory.onAttentionChanged([&store, &clock](const PhoneConfig& phone, const std::optional<phone::Attention>& a) {
    std::optional<store::StoredAttention> stored;
    if (a) stored = store::StoredAttention{a->reason, a->detail, a->since};
    store.submit<Unit>(
        [phone, stored, now = clock.wallNowMs()](store::Db& db) {
          store::PhoneRepository(db).recordAttention(phone.id, phone.serial, phone.usb_port, stored, now);
          return Unit{};
        },
        [id = phone.id](const Result<Unit>& r) {
          if (!r) spdlog::error("phone.attention_store_failed phone_id={} error=\"{}\"", id, r.error().message);
        });
  });
  resets.recordStepsIn(pushed_metrics);
  exec_options.can_start = [this, &inventory](const std::string& phone_id) {
    return inventory.canStart(phone_id, config_.work.wait_for_device);
  };
  phone::HealService* heal_ptr = nullptr;  // set below; the executor tells it of items' ends
  exec_options.item_ended = [&heal_ptr](const std::string& phone_id) {
    if (heal_ptr != nullptr) heal_ptr->itemEnded(phone_id);
  };
  exec::Executor executor(exec_options, store, clock, loop, *containment, resets);
  executor_ptr = &executor;
  // The rack heals itself: dropped phones get the ladder, idle ones a probe.
  phone::HealService heal(
      config_, clock, loop, inventory, resets, adb,
      [&executor](const std::string& phone_id) { return executor.currentOf(phone_id).has_value(); }, announce,
      usb.get());
  heal_ptr = &heal;
  resets.onResetEnded([&heal](const std::string& phone_id, const std::string& trigger, bool ok) {
    heal.resetEnded(phone_id, trigger, ok);
  });
  cancel::CancelService cancels(
      store, clock, executor, [&loop](std::function<void()> fn) { loop.post(std::move(fn)); }, boot_id, fault);

  const phone::DeviceTracker* tracker_ptr = nullptr;  // set once the tracker exists (below)
  api::ApiServices services{config_,
                            store,
                            cancels,
                            clock,
                            tokens,
                            [&loop](std::function<void()> fn) { loop.post(std::move(fn)); },
                            [&executor, &inventory, &disk, &tracker_ptr] {
                              return boost::json::object{{"work", executor.describe()},
                                                         {"adb", describeAdb(inventory, tracker_ptr)},
                                                         {"disk", describeDisk(disk)}};
                            },
                            [&executor](const std::string& phone_id) { executor.phoneChanged(phone_id); },
                            &inventory,
                            &resets,
                            [&executor](const std::string& phone_id) { return executor.currentOf(phone_id); }};
  // Retention: old processes, execution directories and free pages go in
  // the background; directory trees are removed on their own thread.
  phone::WorkerThread retention_worker("pf-retention");
  RetentionOptions retention_options;
  retention_options.state_dir = std::filesystem::absolute(config_.state_dir);
  retention_options.config = config_.retention;
  // Not root, the agent cannot delete what only the work user may (its
  // subdirectories): that part is done as run_as (exec/tree_removal_as_user).
  retention_options.remove_tree = [this, shim = exec_options.shim_binary](const std::filesystem::path& dir) {
    auto removed = os::removeTree(dir);
    if (removed || ::geteuid() == 0) return removed;
    auto again = exec::removeTreeAsUser(shim, config_.work.run_as, dir);
    if (again) return again;
    return Result<os::RemovedTree>(
        makeError(again.error().kind, removed.error().message + "; " + again.error().message));
  };
  RetentionSweeper retention(retention_options, store, clock, loop, retention_worker);
  services.submit_refusal = [&disk] { return disk.refusal(); };
  // Not ready: too little disk, or no adb server can run (a program that is
  // not adb holds its port). A foreign-version server still serves the
  // phones: reported in `adb`, not a reason.
  services.not_ready_reason = [&disk, &tracker_ptr]() -> std::optional<std::string> {
    if (auto low = disk.lowReason()) return low;
    if (tracker_ptr != nullptr) {
      if (auto st = tracker_ptr->serverState(); st.fault == phone::AdbServerFault::kPortHog) return st.detail;
    }
    return std::nullopt;
  };

  services.collect = [&executor, &store, &inventory, &resets, &heal, &server, &tracker_ptr, &retention, &disk,
                      &api](metrics::Registry& r) {
    collectMetrics(r, executor, store, inventory, resets, &heal, server, tracker_ptr);
    collectStorageMetrics(r, retention, disk);
    r.gauge("phonefarm_event_streams", "Open GET /events streams.")
        .set(api ? static_cast<double>(api->openEventStreams()) : 0.0);
  };
  services.registry = &pushed_metrics;
  services.hubs = [&heal] { return heal.hubsJson(); };
  services.events = &events;
  services.adb_probe = [&adb_probe](std::function<void(boost::json::object)> done) {
    adb_probe.probe(std::move(done));
  };
  api = std::make_unique<api::ApiHandler>(std::move(services));

  bool stopping = false;
  auto stop = [&](const char* why) {
    if (std::exchange(stopping, true)) return server.beginShutdown();  // a second signal: do not wait for work
    spdlog::info("agent.stopping signal={} on_shutdown={}", why,
                 config_.work.on_shutdown == ShutdownPolicy::kCancel ? "cancel" : "keep");
    ::sd_notify(0, "STOPPING=1");
    executor.stopStarting();
    retention.stop();
    if (config_.work.on_shutdown != ShutdownPolicy::kCancel) return server.beginShutdown();
    // Work is cancelled hard, through the cancel path (audit trail included).
    cancel::CancelInput input;
    input.reason = "agent shutdown ([work] on_shutdown = \"cancel\")";
    input.requested_by = boost::json::object{{"system", "phonefarm-agent"}};
    input.strategy = CancelStrategy::kHard;
    input.force_after_seconds = 0;
    for (const auto& process_id : executor.executingProcessIds()) {
      cancels.cancelProcess(process_id, input, [process_id](const Result<cancel::CancelOutcome>& r) {
        if (!r) spdlog::error("agent.shutdown_cancel_failed process_id={} error=\"{}\"", process_id, r.error().message);
      });
    }
    executor.whenIdle(std::chrono::seconds(15), [&server] { server.beginShutdown(); });
  };
  loop.addSignalHandler(SIGTERM, [stop] { stop("SIGTERM"); });
  loop.addSignalHandler(SIGINT, [stop] { stop("SIGINT"); });
  loop.addSignalHandler(SIGHUP, [this, &tokens, &server] {
    try {
      tokens.replace(TokenSet::loadFile(config_.tokens_file));
      spdlog::info("auth.tokens_reloaded file={} tokens={}", config_.tokens_file.string(), tokens.size());
    } catch (const std::exception& e) {
      spdlog::error("auth.tokens_reload_failed keeping the previous tokens: {}", e.what());
    }
    server.reloadTls();  // [http] tls_cert/tls_key; logs and keeps the old pair on failure
    spdlog::default_logger()->flush();
  });
  if (containment->runtime() == exec::kRuntimeProcessGroup) {
    // As child subreaper the agent inherits the work's orphans; reap them,
    // leaving the leaders to the executor's pidfds.
    loop.addSignalHandler(SIGCHLD, [&executor] {
      const auto leaders = executor.leaderPids();
      exec::reapAdoptedZombies(leaders);
    });
  }
  // The device stream: every change of a phone's state is logged and may let
  // it take work (or hold it); a phone that drops while its item runs keeps
  // the item running.
  phone::DeviceTrackerOptions tracker_options;
  tracker_options.endpoint = adb_endpoint;
  tracker_options.adb_path = config_.adb.adb_path;
  tracker_options.replace_foreign_server = config_.adb.replace_foreign_server;
  auto logChanges = [&inventory, &resets, &loop, &heal, &store, &clock,
                     announce](const std::vector<std::string>& changed) {
    for (const auto& phone_id : changed) {
      if (auto s = inventory.phone(phone_id)) {
        spdlog::info("phone.adb_state phone_id={} serial={} adb_state={}", phone_id, s->config.serial,
                     s->reported_state);
        // Durable, for GET /events (phone.state): the repository appends the
        // event when the state differs from the one stored.
        store.submit<Unit>(
            [config = s->config, state = s->reported_state, now = clock.wallNowMs()](store::Db& db) {
              store::PhoneRepository(db).recordAdbState(config.id, config.serial, config.usb_port, state, now);
              return Unit{};
            },
            [](const Result<Unit>&) {});
      }
      resets.phoneStateChanged(phone_id);
      loop.post([&heal, phone_id] { heal.phoneStateChanged(phone_id); });
      announce(phone_id);
    }
  };
  phone::DeviceTracker tracker(
      tracker_options,
      [&inventory, logChanges](const std::vector<phone::AdbDevice>& devices) { logChanges(inventory.update(devices)); },
      [&inventory, logChanges](const std::string& reason) {
        spdlog::warn("phone.adb_server_lost reason=\"{}\"", reason);
        logChanges(inventory.serverLost());
      });
  tracker_ptr = &tracker;

  std::vector<std::string> network_serials;  // host:port phones: the agent (re)connects them
  for (const auto& p : config_.phones) {
    if (p.serial.find(':') != std::string::npos) network_serials.push_back(p.serial);
  }
  phone::DeviceReconciler reconciler(
      loop, clock, adb, std::chrono::seconds(2),
      [&inventory, logChanges](const std::vector<phone::AdbDevice>& devices) { logChanges(inventory.update(devices)); },
      network_serials);
  // While a program that is not adb holds the port, only the tracker tries
  // it (with back-off).
  reconciler.pauseWhile([&tracker] { return tracker.serverState().fault == phone::AdbServerFault::kPortHog; });

  // systemd: WATCHDOG=1 every WATCHDOG_USEC/2 from the loop (when the unit
  // has WatchdogSec=), STATUS= every 5 s, READY=1 once recovery is done.
  std::optional<Periodic> watchdog;
  std::uint64_t watchdog_usec = 0;
  if (::sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    const auto period =
        std::max(std::chrono::milliseconds(1),
                 std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::microseconds(watchdog_usec / 2)));
    watchdog.emplace(loop, period, [] { ::sd_notify(0, "WATCHDOG=1"); });
    spdlog::info("agent.watchdog interval_ms={}", period.count());
  }
  Periodic status(loop, std::chrono::seconds(5),
                  [&inventory, &executor] { ::sd_notify(0, ("STATUS=" + statusLine(inventory, executor)).c_str()); });
  // The disk guard measures (and releases or restores the reserve) off the loop.
  phone::WorkerThread disk_worker("pf-disk");
  Periodic disk_check(loop, kDiskCheckPeriod, [&disk_worker, &disk] { disk_worker.run([&disk] { disk.check(); }); });

  server.start();
  loop.post([&event_retention] { event_retention.start(); });
  loop.post([this, &executor, &watchdog, &status, &heal, &disk_check, &retention] {
    if (watchdog) watchdog->start();
    heal.start();
    disk_check.start();
    retention.start();
    // READY=1 only after re-adoption: the listener is bound (server.start()
    // above) and every execution of the previous run is known again.
    executor.start([this, &status] {
      status.start();
      ::sd_notify(0, "READY=1");
      spdlog::info("agent.ready version={} phones={}", PHONEFARM_VERSION, config_.phones.size());
      spdlog::default_logger()->flush();  // operators and supervisors wait for these lines
    });
  });
  tracker.start();
  reconciler.start();
  runLoopThread(loop);
  reconciler.stop();
  tracker.stop();
  heal.stop();
  store.stop();  // every queued job runs and commits before we exit
  events.stop();
  const auto& es = executor.stats();
  spdlog::info("exec.stats started={} finished={} kills={} timeouts={} escalations={} stuck={} adopted={} lost={}",
               es.started, es.finished, es.kills, es.timeouts, es.escalations_fired, es.stuck, es.adopted, es.lost);
  const auto stats = store.stats();
  spdlog::info("store.stats jobs={} commits={} max_batch={} checkpoints={}", stats.jobs, stats.commits, stats.max_batch,
               stats.checkpoints);
  spdlog::info("agent.stopped");
  spdlog::default_logger()->flush();
  return 0;
}

}  // namespace phonefarm
