// Starting an item's work once its start has committed (executor_slots.cpp):
// the control and work directories, the env file, the exec shim's command line, the
// container (containment.hpp), the leader recorded in the store, the timeout
// timer; then the tree is watched (executor_watch.cpp). Also the Executor's
// construction, which resolves [work] run_as and checks that the agent holds
// what running work as that user needs.
#include <fcntl.h>
#include <linux/capability.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "agent/exec/capabilities.hpp"
#include "agent/exec/command_policy.hpp"
#include "agent/exec/env_policy.hpp"
#include "agent/exec/exec_shim.hpp"
#include "agent/exec/exec_status.hpp"
#include "agent/exec/executor_execution.hpp"
#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"
#include "common/os/user_lookup.hpp"

namespace phonefarm::exec {

using executor_detail::marker;
using executor_detail::untilWall;

namespace {

// The control directory: the agent's alone (0700). The exec shim, running as
// the agent's user, reads its env file there and writes the logs and
// status.json; the work cannot enter it.
Status makeControlDir(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return os::sysError("creating " + dir.string());
  os::FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return os::sysError("open " + dir.string());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return os::sysError("stat " + dir.string());
  if (st.st_uid != ::geteuid()) return makeError(ErrorKind::kConflict, dir.string() + " is not the agent's");
  if (::fchmod(fd.get(), 0700) != 0) return os::sysError("chmod " + dir.string());
  return okStatus();
}

// The work directory: the command's cwd and the place of its copy of the
// cancel notice. The agent owns it and gives it run_as's primary group, mode
// 0770, without CAP_CHOWN (changing a file's group to one of our own groups
// needs no capability). No setgid bit: the unit's RestrictSUIDSGID=yes
// refuses to set one. The agent never reads from it.
Status makeWorkDir(const std::filesystem::path& dir, gid_t gid) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return os::sysError("creating " + dir.string());
  os::FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return os::sysError("open " + dir.string());
  if (::fchown(fd.get(), static_cast<uid_t>(-1), gid) != 0) {
    return os::sysError("chgrp " + dir.string() + " to gid " + std::to_string(gid));
  }
  // After the chown: the umask must not narrow the mode the work relies on.
  if (::fchmod(fd.get(), 0770) != 0) return os::sysError("chmod " + dir.string());
  return okStatus();
}

// A parent directory the agent makes: `mode` applied whatever the umask.
Status makeParent(const std::filesystem::path& dir, mode_t mode) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return makeError(ErrorKind::kInternal, "creating " + dir.string() + ": " + ec.message());
  if (::chmod(dir.c_str(), mode) != 0) return os::sysError("chmod " + dir.string());
  return okStatus();
}

// What an unprivileged agent lacks to run work as run_as (nothing as root, or
// when run_as is the agent's own user, which the daemon refuses at start-up:
// command_policy.hpp's checkRunAsNotSelf): CAP_SETUID and CAP_SETGID for the exec
// shim to switch users, CAP_KILL to signal the work (all three unless the job
// units' shim holds them), and membership in run_as's primary group to give
// the work dir that group.
std::optional<std::string> missingPrivileges(const std::string& run_as, uid_t uid, gid_t gid,
                                             bool shim_holds_privileges) {
  const uid_t self = ::geteuid();
  if (self == 0 || self == uid) return std::nullopt;
  std::vector<std::string> missing;
  for (const int cap : {CAP_SETUID, CAP_SETGID, CAP_KILL}) {
    if (!shim_holds_privileges && !hasEffectiveCapability(cap)) missing.push_back(capabilityName(cap));
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
  auto user = os::lookupUser(options_.run_as);
  if (!user || !*user) {
    unavailable_ = "[work] run_as user '" + options_.run_as + "' does not exist";
  } else if ((*user)->uid == 0 || (*user)->gid == 0) {
    unavailable_ = "[work] run_as user '" + options_.run_as + "' is root; work never runs as root";
  } else {
    uid_ = (*user)->uid;
    gid_ = (*user)->gid;
    home_ = (*user)->home;
    unavailable_ = missingPrivileges(options_.run_as, uid_, gid_, options_.shim_holds_privileges);
  }
  if (unavailable_) spdlog::error("exec.unavailable reason=\"{}\" processes stay queued", *unavailable_);
}

Executor::~Executor() = default;

std::vector<std::string> Executor::commandEnv(const StartedItem& started, const std::string& execution_id,
                                              const std::filesystem::path& work_dir) const {
  std::vector<std::string> env;
  bool have_path = false;
  bool have_home = false;
  for (const auto& [k, v] : started.item.env) {
    have_path = have_path || k == "PATH";
    have_home = have_home || k == "HOME";
    std::string entry = k;
    entry.append("=").append(v);
    env.push_back(std::move(entry));
  }
  if (!have_path) env.push_back("PATH=" + std::string(kDefaultCommandPath));
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
  env.push_back("PHONEFARM_CANCEL_FILE=" + (work_dir / kCancelFileName).string());
  env.push_back(marker(execution_id));
  return env;
}

std::unique_ptr<Executor::Execution> Executor::newExecution(const std::string& execution_id,
                                                            const std::string& process_id, const std::string& phone_id,
                                                            const QueueItem& item) const {
  auto e = std::make_unique<Execution>();
  e->execution_id = execution_id;
  e->item_id = item.queue_item_id;
  e->process_id = process_id;
  e->phone_id = phone_id;
  e->stop_signal = item.stop_signal;
  e->dir = options_.state_dir / "executions" / execution_id;
  e->work_dir = options_.state_dir / "workdirs" / execution_id;
  return e;
}

void Executor::armTimeout(Execution& e, const QueueItem& item) {
  if (!item.timeout_seconds || !item.started_at) return;
  const WallMs deadline = *item.started_at + *item.timeout_seconds * 1000;
  const std::string item_id = e.item_id;
  e.timeout_timer = loop_.startTimer(untilWall(clock_, deadline), [this, item_id] { onTimeout(item_id); });
}

void Executor::launch(const StartedItem& started, const std::string& execution_id) {
  ++stats_.started;
  auto e = newExecution(execution_id, started.process.process_id, started.process.phone_id, started.item);

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

  // The control dir under a parent only the agent enters; the work dir
  // under one the work user can traverse (0711) to reach its own.
  if (auto made = makeParent(e->dir.parent_path(), 0700); !made) return fail(made.error().message);
  if (auto made = makeControlDir(e->dir); !made) return fail(made.error().message);
  if (auto made = makeParent(e->work_dir.parent_path(), 0711); !made) return fail(made.error().message);
  if (auto made = makeWorkDir(e->work_dir, gid_); !made) return fail(made.error().message);

  // The env policy in force now, not the one of the submit: the names only
  // in the note, never a value.
  std::string env_refusal;
  for (const auto& [name, value] : started.item.env) {
    if (auto why = envNameRefusal(name, options_.allowed_env)) {
      env_refusal += (env_refusal.empty() ? "" : "; ") + ("env " + name + ": " + *why);
    }
  }
  if (!env_refusal.empty()) return fail("refused at launch: " + env_refusal);

  std::string command_path = started.item.command.front();
  if (options_.allowed_command_prefixes) {
    // Checked again now, maybe days after the submit: a symlink swapped in
    // between, or a path through /proc/self/cwd, must not run something
    // else. The resolved path is what runs (argv[0], so "$0" is real too).
    auto resolved = resolveAllowedCommand(command_path, *options_.allowed_command_prefixes);
    if (!resolved) return fail("refused at launch: " + resolved.error().message);
    if (auto why = checkCommandNotWritableBy(*resolved, options_.run_as)) return fail("refused at launch: " + *why);
    command_path = std::move(*resolved);
  }
  // The values go to a 0600 file in the control dir, never on a command line.
  if (auto env = writeShimEnvFile(e->dir, commandEnv(started, execution_id, e->work_dir)); !env) {
    return fail("writing the command's environment: " + env.error().message);
  }

  LaunchRequest request;
  request.execution_id = execution_id;
  request.marker = marker(execution_id);
  request.env = {request.marker};
  request.blocked_signals = shimForwardedSignals();
  request.argv = {options_.shim_binary.string(),
                  kExecShimSubcommand,
                  "--control-dir",
                  e->dir.string(),
                  "--work-dir",
                  e->work_dir.string(),
                  "--run-as",
                  options_.run_as,
                  "--log-max-bytes",
                  std::to_string(options_.log_max_bytes),
                  "--",
                  command_path};
  request.argv.insert(request.argv.end(), started.item.command.begin() + 1, started.item.command.end());
  request.control_dir = e->dir;
  request.command = {command_path};
  request.command.insert(request.command.end(), started.item.command.begin() + 1, started.item.command.end());

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
      [execution_id](const Result<Unit>& r) {
        if (!r) spdlog::warn("exec.leader_store_failed execution_id={} error=\"{}\"", execution_id, r.error().message);
      });

  armTimeout(*e, started.item);
  attach(std::move(e));
}

}  // namespace phonefarm::exec
