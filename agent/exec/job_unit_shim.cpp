// The exec shim in a job unit (see the header): the arguments, the argv file,
// the options checked against the root-owned config, the cgroup split with
// the work limits, then the ordinary shim.
#include "agent/exec/job_unit_shim.hpp"

#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <utility>

#include "agent/exec/capabilities.hpp"
#include "agent/exec/cgroup_tree.hpp"
#include "agent/exec/command_policy.hpp"
#include "agent/exec/env_policy.hpp"
#include "agent/exec/exec_status.hpp"
#include "agent/exec/systemd_job_units.hpp"
#include "agent/exec/work_limits.hpp"
#include "common/clock.hpp"
#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"
#include "common/os/user_lookup.hpp"

namespace phonefarm::exec {
namespace {

Error refused(std::string message) { return makeError(ErrorKind::kInvalid, std::move(message)); }

// control_dir/argv, the agent's own regular file, never through a link.
Result<std::vector<std::string>> readArgvFile(const std::filesystem::path& control_dir) {
  const auto path = control_dir / kArgvFileName;
  os::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return os::sysError("open " + path.string());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return os::sysError("fstat " + path.string());
  if (!S_ISREG(st.st_mode)) return refused(path.string() + " is not a regular file");
  if (st.st_uid != ::geteuid()) return refused(path.string() + " is not the agent's own file");
  if (static_cast<std::uint64_t>(st.st_size) > kMaxArgvFileBytes) return refused(path.string() + " is too large");
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os::sysError("read " + path.string());
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  if (text.empty() || text.back() != '\0') return refused(path.string() + " does not end with a NUL byte");
  std::vector<std::string> argv;
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto end = rest.find('\0');
    argv.emplace_back(rest.substr(0, end));
    rest.remove_prefix(end + 1);
  }
  return argv;
}

// The unit's cgroup is the agent user's (Delegate=yes): the shim leaves it
// for a leaf of its own (cgroup v2 lets a cgroup with processes enable no
// controllers for its children), then makes the work's leaf with the limits.
// Returns the cgroup.procs files the command must join, and sets
// `limit_hits` to the reader of what the limits did (status.json's
// limit_hits): the counters where this shim placed a limit and those of
// the unit's own cgroups, where systemd enforces its copy (TasksMax=,
// MemoryMax=; on a hybrid host in the v1 hierarchies), the larger of each:
// whichever limit stopped the work, the kernel counted it in one of them,
// and a hit can be counted in both. The unit's cgroups go with the unit, so
// the agent cannot read them after the end.
Result<std::vector<int>> prepareWorkCgroup(const AgentConfig& config, const std::string& execution_id,
                                           std::vector<os::FileDescriptor>& keep,
                                           std::function<LimitHits()>& limit_hits) {
  auto own = detectCgroupRoot("");
  if (!own) return own.error();
  const auto shim_dir = *own / std::string(kShimCgroupName);
  if (::mkdir(shim_dir.c_str(), 0755) != 0 && errno != EEXIST) return os::sysError("mkdir " + shim_dir.string());
  if (auto moved = writeCgroupFile(shim_dir / "cgroup.procs", "0"); !moved) return moved.error();
  auto tree = CgroupTree::open(*own);
  if (!tree) return tree.error();
  auto leaf = tree->createLeaf(execution_id);
  if (!leaf) return leaf.error();
  const WorkLimits limits{config.work.pids_max, config.work.memory_max, config.work.cpu_weight};
  const WorkLimiter limiter = WorkLimiter::open(limits, tree->leafControllers());
  for (const auto& [limit, why] : limiter.unavailable()) {
    std::cerr << "phonefarm-agent exec-shim: " << limit << " is left to the unit's own limit (" << why << ")\n";
  }
  auto joins = limiter.prepare(execution_id, *leaf);
  if (!joins) return joins.error();
  limit_hits = [limiter, limits, execution_id, leaf = *leaf, unit = *own] {
    const LimitHits placed = limiter.hits(execution_id, leaf);
    auto proc_cgroup = readCgroupFile("/proc/self/cgroup");
    auto mountinfo = readCgroupFile("/proc/self/mountinfo");
    const LimitHits by_unit =
        unitCgroupHits(limits, unit, proc_cgroup ? *proc_cgroup : "", mountinfo ? *mountinfo : "");
    return LimitHits{std::max(placed.oom_kills, by_unit.oom_kills),
                     std::max(placed.pids_refused, by_unit.pids_refused)};
  };
  joins->insert(joins->begin(), *leaf);
  std::vector<int> fds;
  for (const auto& dir : *joins) {
    const auto procs = dir / "cgroup.procs";
    os::FileDescriptor fd(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return os::sysError("open " + procs.string());
    fds.push_back(fd.get());
    keep.push_back(std::move(fd));
  }
  return fds;
}

// nftw's callback has no user data: the passes count what they could not open.
int g_unreadable_dirs = 0;

int openToGroup(const char* path, const struct stat* st, int type, FTW* /*ftw*/) {
  if (type == FTW_SL || type == FTW_SLN || type == FTW_NS) return 0;  // links are not followed
  const mode_t mode = st->st_mode & 07777;
  const mode_t wanted =
      S_ISDIR(st->st_mode) ? (mode | S_IRWXU | S_IRWXG) : (mode | S_IRUSR | S_IWUSR | S_IRGRP | S_IWGRP);
  if (type == FTW_DNR) ++g_unreadable_dirs;
  // Not ours (the work dir itself is the agent's): nothing to do.
  if (wanted != mode && st->st_uid == ::geteuid()) (void)::chmod(path, wanted);
  return 0;
}

}  // namespace

int openWorkDirToGroup(const AgentConfig& config, const std::string& execution_id) {
  if (!isValidJobUnitInstance(execution_id) || !config.state_dir.is_absolute()) return kShimExitRefused;
  auto user = os::lookupUser(config.work.run_as);
  if (!user || !*user || (*user)->uid == 0 || (*user)->gid == 0) {
    std::cerr << "phonefarm-agent exec-shim: no unprivileged run_as user '" << config.work.run_as << "'\n";
    return kShimExitRefused;
  }
  const gid_t gid = (*user)->gid;
  const uid_t uid = (*user)->uid;
  if (::setgroups(1, &gid) != 0 || ::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0) {
    std::cerr << "phonefarm-agent exec-shim: cannot become " << config.work.run_as << ": " << std::strerror(errno)
              << "\n";
    return kShimExitRefused;
  }
  if (auto dropped = dropAllCapabilities(); !dropped) {
    std::cerr << "phonefarm-agent exec-shim: " << dropped.error().message << "\n";
    return kShimExitRefused;
  }
  const auto dir = config.state_dir / "workdirs" / execution_id;
  // A directory locked with chmod 000 is opened up in one pass and entered
  // in the next; nesting deeper than the passes is left to the job's user.
  constexpr int kPasses = 8;
  for (int pass = 0; pass < kPasses; ++pass) {
    g_unreadable_dirs = 0;
    if (::nftw(dir.c_str(), openToGroup, 32, FTW_PHYS) != 0) break;
    if (g_unreadable_dirs == 0) break;
  }
  return kShimExitOk;
}

bool isJobUnitShim(const std::vector<std::string>& args) {
  return std::find(args.begin(), args.end(), kJobUnitFlag) != args.end() &&
         std::find(args.begin(), args.end(), "--") == args.end();
}

Result<JobUnitShimArgs> parseJobUnitShimArgs(const std::vector<std::string>& args) {
  JobUnitShimArgs parsed;
  bool have_unit = false;
  bool have_config = false;
  std::size_t i = 0;
  while (i < args.size()) {
    const std::string& flag = args[i];
    if (flag == kAfterExitFlag) {
      if (std::exchange(parsed.after_exit, true)) return refused(flag + " given twice");
      i += 1;
      continue;
    }
    if (flag != kJobUnitFlag && flag != "--config") return refused("unknown option '" + flag + "'");
    if (i + 1 >= args.size()) return refused(flag + " needs a value");
    const std::string& value = args[i + 1];
    i += 2;
    if (flag == kJobUnitFlag) {
      if (std::exchange(have_unit, true)) return refused(flag + " given twice");
      if (!isValidJobUnitInstance(value)) return refused("execution id '" + value + "' is not [A-Za-z0-9_-]{1,64}");
      parsed.execution_id = value;
    } else {
      if (std::exchange(have_config, true)) return refused(flag + " given twice");
      if (value.empty() || value.front() != '/') return refused("--config must be an absolute path");
      parsed.config = value;
    }
  }
  if (!have_unit) return refused(std::string(kJobUnitFlag) + " is required");
  if (!have_config) return refused("--config is required");
  return parsed;
}

Status writeShimArgvFile(const std::filesystem::path& control_dir, const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& arg : argv) {
    if (arg.find('\0') != std::string::npos) return refused("a command argument contains a NUL byte");
    text.append(arg).push_back('\0');
  }
  if (text.size() > kMaxArgvFileBytes) return refused("the command line is larger than 256 KiB");
  const auto path = control_dir / kArgvFileName;
  ::unlink(path.c_str());
  os::FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return os::sysError("create " + path.string());
  std::string_view rest = text;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd.get(), rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return os::sysError("write " + path.string());
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  return okStatus();
}

namespace {

// A refused spec still ends the item with the reason: status.json in the
// control dir (the agent's own, as is this shim) says why, as a command that
// could not be executed (exit 127), instead of the agent finding no outcome
// and calling the execution lost. The message names env names, never values.
void recordRefusal(const AgentConfig& config, std::string_view execution_id, const std::string& why) {
  if (!isValidJobUnitInstance(execution_id) || !config.state_dir.is_absolute()) return;
  const SystemClock clock;
  ExecStatus status;
  status.pid = ::getpid();  // no command ran: the shim's own
  status.exit_code = 127;
  status.started_at = clock.wallNowMs();
  status.ended_at = status.started_at;
  status.error = "refused by the job unit's shim: " + why;
  if (auto st = writeExecStatus(config.state_dir / "executions" / std::string(execution_id), status); !st) {
    std::cerr << "phonefarm-agent exec-shim: writing status: " << st.error().message << "\n";
  }
}

}  // namespace

Result<ShimOptions> jobUnitShimOptions(const AgentConfig& config, std::string_view execution_id) {
  if (!isValidJobUnitInstance(execution_id)) {
    return refused("execution id '" + std::string(execution_id) + "' is not [A-Za-z0-9_-]{1,64}");
  }
  if (!config.state_dir.is_absolute()) return refused("state_dir must be an absolute path for job units");
  auto user = os::lookupUser(config.work.run_as);
  if (!user) return user.error();
  if (!*user) return refused("run_as user '" + config.work.run_as + "' does not exist");
  if ((*user)->uid == 0 || (*user)->gid == 0) {
    return refused("refusing to run work as root (run_as user '" + config.work.run_as + "')");
  }
  ShimOptions options;
  options.control_dir = config.state_dir / "executions" / std::string(execution_id);
  options.work_dir = config.state_dir / "workdirs" / std::string(execution_id);
  options.run_as = config.work.run_as;
  options.log_max_bytes = config.work.log_max_bytes;  // the root-owned config's cap, not the agent's word
  auto argv = readArgvFile(options.control_dir);
  if (!argv) return argv.error();
  if (argv->empty() || argv->front().empty() || argv->front().front() != '/') {
    return refused("the command is not an absolute path");
  }
  // The agent checked the prefixes too; the shim does not take its word.
  auto resolved = resolveAllowedCommand(argv->front(), config.work.allowed_command_prefixes);
  if (!resolved) return refused("command refused: " + resolved.error().message);
  if (auto why = checkCommandNotWritableBy(*resolved, config.work.run_as)) return refused("command refused: " + *why);
  argv->front() = std::move(*resolved);
  options.argv = std::move(*argv);
  // Nor for the env: a name the config's policy refuses (LD_PRELOAD, a PATH
  // of the agent's choosing, ...) would run other code as run_as. Taken
  // here, once: the shim runs what it checked.
  auto env = takeShimEnvFile(options.control_dir);
  if (!env) return refused("the command's environment: " + env.error().message);
  const auto names = refusedCommandEnvNames(*env, config.work.allowed_env, (*user)->home);
  if (!names.empty()) {
    std::string list;
    for (const auto& name : names) list += (list.empty() ? "" : ", ") + name;
    return refused("env refused by the env policy (work.allowed_env, README \"Trust boundary\"): " + list);
  }
  options.env = std::move(*env);
  return options;
}

int runJobUnitShim(const JobUnitShimArgs& args) {
  // systemd starts us with nothing blocked, and the agent may send a stop
  // notice as soon as StartUnit has returned: hold the forwarded signals
  // from here on (runExecShim keeps them blocked and forwards them), so the
  // notice waits for the command instead of killing the shim.
  sigset_t forwarded;
  ::sigemptyset(&forwarded);
  for (const int sig : shimForwardedSignals()) ::sigaddset(&forwarded, sig);
  ::sigprocmask(SIG_BLOCK, &forwarded, nullptr);
  // Before the ordinary shim redirects fd 2, errors go to the unit's journal.
  try {
    const AgentConfig config = loadConfigFile(args.config);
    if (args.after_exit) return openWorkDirToGroup(config, args.execution_id);
    auto options = jobUnitShimOptions(config, args.execution_id);
    if (!options) {
      std::cerr << "phonefarm-agent exec-shim: " << options.error().message << "\n";
      recordRefusal(config, args.execution_id, options.error().message);
      return kShimExitRefused;
    }
    std::vector<os::FileDescriptor> cgroup_fds;
    auto cgroups = prepareWorkCgroup(config, args.execution_id, cgroup_fds, options->limit_hits);
    if (!cgroups) {
      std::cerr << "phonefarm-agent exec-shim: the work's cgroup: " << cgroups.error().message << "\n";
      return kShimExitFailed;
    }
    options->command_cgroups = std::move(*cgroups);
    return runExecShim(*options);
  } catch (const std::exception& e) {
    std::cerr << "phonefarm-agent exec-shim: " << e.what() << "\n";
    return kShimExitRefused;
  }
}

}  // namespace phonefarm::exec
