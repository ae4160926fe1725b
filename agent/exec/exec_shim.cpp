// The exec shim (see the header). Order of work: resolve run_as, take the
// env file, point fds 0-2 at /dev/null and the two logs in the control dir,
// make the two pipes of the log relay (log_relay.hpp), block the forwarded
// signals and read them from a signalfd, fork; the child puts the pipes at
// its fds 1 and 2, drops to run_as, proves it, chdirs to the work dir and
// execs the command, while the shim keeps only CAP_KILL, relays the pipes
// into the logs and forwards signals to the command through its pidfd until
// it exits, then drains the pipes and writes status.json atomically.
// Everything between fork and execve in the child is async-signal-safe, as
// the shim may run in a fork of a larger process (the unit tests run it so).
#include "agent/exec/exec_shim.hpp"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/exec/exec_status.hpp"
#include "agent/exec/log_relay.hpp"
#include "agent/exec/signal_names.hpp"
#include "common/clock.hpp"
#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"
#include "common/os/user_lookup.hpp"

namespace phonefarm::exec {
namespace {

Error invalid(std::string message) { return makeError(ErrorKind::kInvalid, std::move(message)); }
// Before stdio is redirected fd 2 is whatever the agent gave us; afterwards it
// is stderr.log, which is where the technician looks for why a shim failed.
void report(const std::string& message) {
  std::string line = "phonefarm-agent exec-shim: " + message + "\n";
  std::string_view rest = line;
  while (!rest.empty()) {
    const ssize_t n = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

bool hasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

std::string uidText(uid_t uid) { return std::to_string(uid); }

// Who the command becomes, resolved before the fork: the child may only make
// async-signal-safe calls, so no lookups there.
struct Identity {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool already = false;  // the shim's caller is run_as already (tests, manual runs)
  uid_t caller_uid = 0;  // the shim's effective uid, named in errors
};

Result<Identity> resolveIdentity(const std::string& user) {
  auto entry = os::lookupUser(user);
  if (!entry) return entry.error();
  if (!*entry) return invalid("run_as user '" + user + "' does not exist");
  const os::UserEntry& account = **entry;
  if (account.uid == 0) return invalid("refusing to run work as root (run_as user '" + user + "' has uid 0)");
  if (account.gid == 0) return invalid("refusing to run work with group root (run_as user '" + user + "' has gid 0)");
  Identity id;
  id.user = user;
  id.uid = account.uid;
  id.gid = account.gid;
  for (const gid_t g : os::groupsOf(user, account.gid)) {
    if (g == 0) return invalid("refusing to run work in group root (run_as user '" + user + "' is a member)");
    id.groups.push_back(g);
  }
  uid_t r = 0, e = 0, s = 0;
  ::getresuid(&r, &e, &s);
  id.already = r == account.uid && e == account.uid && s == account.uid;
  id.caller_uid = e;
  return id;
}

// Why the command's child did not exec, sent to the shim through a pipe.
enum class ChildStep : int {
  kGroups = 1,
  kGid,
  kUid,
  kCapabilities,
  kVerify,
  kRegain,
  kNoNewPrivs,
  kChdir,
  kExec,
  kStdio,
  kCgroup
};

struct ChildFailure {
  ChildStep step = ChildStep::kExec;
  int err = 0;
  // kVerify: what was left (capability words, or ids).
  std::uint64_t inheritable = 0, permitted = 0, effective = 0, ambient = 0;
  uid_t ids[3] = {};
  gid_t gids[3] = {};
};

// Everything the child needs, prepared before the fork.
struct ChildPlan {
  const Identity* identity = nullptr;
  const std::vector<int>* cgroups = nullptr;  // cgroup.procs fds to join first
  const char* work_dir = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int error_fd = -1;
  int stdout_fd = -1;  // the write ends of the log relay's pipes
  int stderr_fd = -1;
};

[[noreturn]] void childFail(const ChildPlan& plan, ChildFailure failure) {
  if (::write(plan.error_fd, &failure, sizeof failure) < 0) {
    // Nothing to do: the shim then sees exit 127 without a reason.
  }
  ::_exit(127);
}

[[noreturn]] void childFail(const ChildPlan& plan, ChildStep step, int err) {
  ChildFailure failure;
  failure.step = step;
  failure.err = err;
  childFail(plan, failure);
}

// The child between fork and execve: async-signal-safe calls only. It drops
// to run_as for good and proves it (ids, capability sets, no way back)
// before any of the work runs; then chdir, clean signal state, exec.
[[noreturn]] void execCommand(const ChildPlan& plan) {
  const Identity& id = *plan.identity;
  // The relay's pipes, not the logs: the shim caps what reaches them. dup2
  // clears close-on-exec on the copies; the originals close at the exec.
  if (::dup2(plan.stdout_fd, STDOUT_FILENO) < 0 || ::dup2(plan.stderr_fd, STDERR_FILENO) < 0) {
    childFail(plan, ChildStep::kStdio, errno);
  }
  // Into the limited leaf while still the shim's user, who owns it: "0" is
  // the writing process itself.
  for (const int fd : *plan.cgroups) {
    if (::write(fd, "0", 1) != 1) childFail(plan, ChildStep::kCgroup, errno);
  }
  if (!id.already) {
    // Groups before uid: once setuid has run there is no privilege left to
    // change them, and the caller's supplementary groups must not leak.
    if (::setgroups(id.groups.size(), id.groups.data()) != 0) childFail(plan, ChildStep::kGroups, errno);
    if (::setresgid(id.gid, id.gid, id.gid) != 0) childFail(plan, ChildStep::kGid, errno);
    if (::setresuid(id.uid, id.uid, id.uid) != 0) childFail(plan, ChildStep::kUid, errno);
  }
  // setuid() clears capabilities only when it leaves uid 0; a caller holding
  // ambient ones (the agent under systemd) would pass them on.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    childFail(plan, ChildStep::kCapabilities, errno);
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[2] = {};
  if (::syscall(SYS_capset, &header, none) != 0) childFail(plan, ChildStep::kCapabilities, errno);

  // Verify instead of trusting the calls: a partial drop must stop the work.
  ChildFailure check;
  check.step = ChildStep::kVerify;
  __user_cap_data_struct data[2] = {};
  __user_cap_header_struct get_header{_LINUX_CAPABILITY_VERSION_3, 0};
  if (::syscall(SYS_capget, &get_header, data) != 0) childFail(plan, ChildStep::kCapabilities, errno);
  check.inheritable = data[0].inheritable | (std::uint64_t{data[1].inheritable} << 32);
  check.permitted = data[0].permitted | (std::uint64_t{data[1].permitted} << 32);
  check.effective = data[0].effective | (std::uint64_t{data[1].effective} << 32);
  for (int cap = 0; cap < 64; ++cap) {
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1) check.ambient |= std::uint64_t{1} << cap;
  }
  ::getresuid(&check.ids[0], &check.ids[1], &check.ids[2]);
  ::getresgid(&check.gids[0], &check.gids[1], &check.gids[2]);
  bool wrong = check.inheritable != 0 || check.permitted != 0 || check.effective != 0 || check.ambient != 0;
  for (int i = 0; i < 3; ++i) wrong = wrong || check.ids[i] != id.uid || check.gids[i] != id.gid;
  gid_t groups[NGROUPS_MAX];
  const int ngroups = ::getgroups(NGROUPS_MAX, groups);
  for (int i = 0; i < ngroups; ++i) wrong = wrong || groups[i] == 0;
  if (wrong) childFail(plan, check);
  if (::setuid(0) == 0 || (id.caller_uid != id.uid && ::setuid(id.caller_uid) == 0)) {
    childFail(plan, ChildStep::kRegain, 0);
  }
  // No setuid binary or file capability can give any of it back.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) childFail(plan, ChildStep::kNoNewPrivs, errno);
  if (::chdir(plan.work_dir) != 0) childFail(plan, ChildStep::kChdir, errno);

  // Handlers are reset by execve anyway, but SIG_IGN and the blocked mask are
  // inherited; the command starts from the defaults whatever the agent had.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t empty;
  ::sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);
  // Whatever fds leaked into the shim do not reach the work.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  ::execve(plan.argv[0], plan.argv, plan.envp);
  childFail(plan, ChildStep::kExec, errno);
}

std::string hex(std::uint64_t value) {
  char buf[17] = {};
  std::to_chars(buf, buf + 16, value, 16);
  return buf;
}

// The shim's words for a child that did not get to exec the command.
std::string describeFailure(const ChildFailure& f, const Identity& id) {
  const std::string cannot = "running as uid " + uidText(id.caller_uid) + ", cannot switch to run_as user '" + id.user +
                             "' (uid " + uidText(id.uid) + "; needs root or CAP_SETUID and CAP_SETGID): ";
  std::string why = std::strerror(f.err);
  switch (f.step) {
    case ChildStep::kGroups:
      return cannot + "setgroups: " + why;
    case ChildStep::kGid:
      return cannot + "setgid " + std::to_string(id.gid) + ": " + why;
    case ChildStep::kUid:
      return cannot + "setuid " + uidText(id.uid) + ": " + why;
    case ChildStep::kCapabilities:
      return "clearing every capability: " + why;
    case ChildStep::kVerify: {
      std::string left;
      const std::pair<const char*, std::uint64_t> sets[] = {
          {"CapInh", f.inheritable}, {"CapPrm", f.permitted}, {"CapEff", f.effective}, {"CapAmb", f.ambient}};
      for (const auto& [name, value] : sets) {
        if (value != 0) left += std::string(left.empty() ? "" : ", ") + name + "=" + hex(value);
      }
      if (!left.empty()) return "capabilities left after dropping them: " + left;
      return "ids are uid " + uidText(f.ids[0]) + "/" + uidText(f.ids[1]) + "/" + uidText(f.ids[2]) + " gid " +
             std::to_string(f.gids[0]) + "/" + std::to_string(f.gids[1]) + "/" + std::to_string(f.gids[2]) +
             " after dropping to '" + id.user + "' (uid " + uidText(id.uid) + "), or a group is root";
    }
    case ChildStep::kRegain:
      return "could regain root or the caller's uid after dropping to '" + id.user + "'";
    case ChildStep::kNoNewPrivs:
      return "prctl(PR_SET_NO_NEW_PRIVS): " + why;
    case ChildStep::kChdir:
      return "chdir to the work directory: " + why;
    case ChildStep::kStdio:
      return "dup2 of the output pipes: " + why;
    case ChildStep::kCgroup:
      return "joining the work's cgroup: " + why;
    case ChildStep::kExec:
      break;
  }
  return why;
}

// Puts `fd` at `target` without the CLOEXEC flag, so the command inherits it.
Status moveFd(int fd, int target) {
  if (fd == target) {
    if (::fcntl(fd, F_SETFD, 0) != 0) return os::sysError("fcntl");
    return okStatus();
  }
  if (::dup2(fd, target) < 0) return os::sysError("dup2");
  ::close(fd);
  return okStatus();
}

// The logs are the shim's (the agent's user), 0640, in the control dir: the
// command writes into the relay's pipes and cannot rename, replace or link
// them. No O_APPEND: splice(2) refuses such files; the relay writes at the end.
Status redirectStdio(int control_fd) {
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return os::sysError("open /dev/null");
  constexpr int kLogFlags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC;
  const int out_fd = ::openat(control_fd, kStdoutLogName, kLogFlags, 0640);
  if (out_fd < 0) return os::sysError(std::string("open ") + kStdoutLogName);
  const int err_fd = ::openat(control_fd, kStderrLogName, kLogFlags, 0640);
  if (err_fd < 0) return os::sysError(std::string("open ") + kStderrLogName);
  // Opened lowest-free-first, so no later source fd can be an earlier target.
  for (auto [fd, target] : {std::pair{null_fd, 0}, std::pair{out_fd, 1}, std::pair{err_fd, 2}}) {
    if (auto st = moveFd(fd, target); !st) return st;
  }
  return okStatus();
}

// Reads and deletes control_dir/env: the values exist on disk only until the
// shim has them.
Result<std::vector<std::string>> takeEnvFile(int control_fd) {
  os::FileDescriptor fd(::openat(control_fd, kEnvFileName, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return os::sysError(std::string("open ") + kEnvFileName);
  ::unlinkat(control_fd, kEnvFileName, 0);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return os::sysError(std::string("fstat ") + kEnvFileName);
  if (!S_ISREG(st.st_mode)) return invalid(std::string(kEnvFileName) + " is not a regular file");
  if (st.st_uid != ::geteuid()) return invalid(std::string(kEnvFileName) + " is not the shim's own file");
  if (static_cast<std::uint64_t>(st.st_size) > kMaxEnvFileBytes)
    return invalid(std::string(kEnvFileName) + " is too large");
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os::sysError(std::string("read ") + kEnvFileName);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  std::vector<std::string> env;
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto end = rest.find('\0');
    if (end == std::string_view::npos) return invalid(std::string(kEnvFileName) + " does not end with a NUL byte");
    const std::string_view entry = rest.substr(0, end);
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return invalid(std::string(kEnvFileName) + " has an entry that is not K=V");
    env.emplace_back(entry);
    rest.remove_prefix(end + 1);
  }
  return env;
}

// After the fork: the shim keeps CAP_KILL alone (to forward stop signals to
// a command of another uid), nothing that could change users or files.
void keepOnlyKill() {
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return;
  const bool kill = (data[CAP_KILL / 32].permitted & (1U << (CAP_KILL % 32))) != 0;
  __user_cap_data_struct keep[2] = {};
  if (kill) keep[CAP_KILL / 32].permitted = keep[CAP_KILL / 32].effective = 1U << (CAP_KILL % 32);
  if (::syscall(SYS_capset, &header, keep) != 0) report(std::string("dropping capabilities: ") + std::strerror(errno));
}

std::vector<char*> cStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

struct StartedCommand {
  pid_t pid = -1;
  os::FileDescriptor pidfd;
  std::optional<ChildFailure> failure;  // set when the child did not exec the command
};

// The two streams of the command's output, relayed into the logs.
struct Relay {
  LogStream out;
  LogStream err;
};

Status startCommand(const ShimOptions& options, const Identity& identity, std::vector<std::string> env, Relay& relay,
                    StartedCommand& started) {
  std::vector<std::string> argv_storage = options.argv;
  const std::vector<char*> argv = cStrings(argv_storage);
  const std::vector<char*> envp = cStrings(env);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return os::sysError("pipe2");
  os::FileDescriptor read_end(pipe_fds[0]);
  const ChildPlan plan{&identity,   &options.command_cgroups, options.work_dir.c_str(), argv.data(), envp.data(),
                       pipe_fds[1], relay.out.writeFd(),      relay.err.writeFd()};
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipe_fds[1]);
    return os::sysError("fork");
  }
  if (pid == 0) execCommand(plan);
  ::close(pipe_fds[1]);
  // Only the command (and what it starts) may hold the write ends, or the
  // relay would never see the end of the streams.
  relay.out.closeWriteEnd();
  relay.err.closeWriteEnd();
  keepOnlyKill();
  started.pid = pid;
  // Safe to open by pid: the child is ours and not reaped, so the pid cannot
  // have been reused. From here on signals go through the pidfd only.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const int err = errno;
    ::kill(pid, SIGKILL);  // still our unreaped child: the pid is its own
    ::waitpid(pid, nullptr, 0);
    return os::sysError("pidfd_open", err);
  }
  started.pidfd.reset(pidfd);
  // The pipe closes on a successful execve (CLOEXEC) or carries the failure.
  ChildFailure failure;
  ssize_t n = 0;
  do {
    n = ::read(read_end.get(), &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof failure)) started.failure = failure;
  return okStatus();
}

// Drains the signalfd and sends each signal on. SIGCONT goes last: signalfd
// hands out pending signals lowest number first, and the agent's order (stop
// notice, then SIGCONT) is the one the cancel contract describes.
void forwardPendingSignals(int signal_fd, int pidfd) {
  std::vector<int> signals;
  bool cont = false;
  signalfd_siginfo infos[16];
  for (;;) {
    const ssize_t n = ::read(signal_fd, infos, sizeof infos);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN: drained
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof(signalfd_siginfo); ++i) {
      const int sig = static_cast<int>(infos[i].ssi_signo);
      if (sig == SIGCONT) {
        cont = true;
      } else {
        signals.push_back(sig);
      }
    }
  }
  if (cont) signals.push_back(SIGCONT);
  for (const int sig : signals) {
    // ESRCH: the command has just exited; its status is on the way.
    if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0 && errno != ESRCH) {
      report("forwarding " + signalName(sig) + ": " + std::strerror(errno));
    }
  }
}

// What one turn of the poll loop relays of a stream, at most: a job that
// writes without pause must not keep the loop from forwarding signals.
constexpr std::uint64_t kPumpBudget = 4 << 20;
// After the command's exit, processes it left behind may still hold the
// pipes: the shim relays what they write until they all closed them, or
// nothing came for kLeftoverQuiet, or kLeftoverGrace passed. Then it exits;
// what they write later fails with EPIPE.
constexpr std::int64_t kLeftoverQuietMs = 200;
constexpr std::int64_t kLeftoverGraceNs = 2'000'000'000;

// Relays the output and forwards signals until the pidfd reports the exit,
// then reaps the command.
Result<siginfo_t> superviseCommand(const StartedCommand& command, int signal_fd, Relay& relay) {
  for (;;) {
    // The pipes' fds turn -1 at their end, which poll skips.
    pollfd fds[4] = {{signal_fd, POLLIN, 0},
                     {command.pidfd.get(), POLLIN, 0},
                     {relay.out.readFd(), POLLIN, 0},
                     {relay.err.readFd(), POLLIN, 0}};
    if (::poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      // Forwarding is lost, but the exit status still matters more: reap.
      report(std::string("poll: ") + std::strerror(errno));
      break;
    }
    if (fds[0].revents & POLLIN) forwardPendingSignals(signal_fd, command.pidfd.get());
    if (fds[2].revents != 0) relay.out.pump(kPumpBudget);
    if (fds[3].revents != 0) relay.err.pump(kPumpBudget);
    if (fds[1].revents != 0) break;
  }
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(command.pid), &info, WEXITED) != 0) {
    if (errno != EINTR) return os::sysError("waitid");
  }
  return info;
}

// After the exit: relays what processes the command left behind write, for
// as long as kLeftoverQuietMs and kLeftoverGraceNs allow.
void relayLeftovers(Relay& relay, const Clock& clock) {
  const std::int64_t deadline = clock.bootNowNs() + kLeftoverGraceNs;
  for (;;) {
    pollfd fds[2] = {{relay.out.readFd(), POLLIN, 0}, {relay.err.readFd(), POLLIN, 0}};
    if (fds[0].fd < 0 && fds[1].fd < 0) return;  // every writer is gone
    const std::int64_t left_ms = (deadline - clock.bootNowNs()) / 1'000'000;
    if (left_ms <= 0) return;
    const int ready = ::poll(fds, 2, static_cast<int>(std::min(left_ms, kLeftoverQuietMs)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return;
    if (fds[0].revents != 0) relay.out.pump(kPumpBudget);
    if (fds[1].revents != 0) relay.err.pump(kPumpBudget);
  }
}

int runShim(const ShimOptions& options) {
  if (options.argv.empty() || !options.control_dir.is_absolute() || !options.work_dir.is_absolute()) {
    report("options not validated by parseShimArgs");
    return kShimExitRefused;
  }
  // Writes to a log or to a pipe the agent has closed must not kill the shim;
  // the command gets SIGPIPE back at SIG_DFL in execCommand.
  ::signal(SIGPIPE, SIG_IGN);
  auto identity = resolveIdentity(options.run_as);
  if (!identity) {
    report(identity.error().message);
    return kShimExitRefused;
  }
  os::FileDescriptor control(::open(options.control_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!control) {
    report("open " + options.control_dir.string() + ": " + std::strerror(errno));
    return kShimExitFailed;
  }
  auto env = options.env ? Result<std::vector<std::string>>(*options.env) : takeEnvFile(control.get());
  if (!env) {
    report("the command's environment (" + options.control_dir.string() + "/" + kEnvFileName +
           "): " + env.error().message);
    return kShimExitRefused;
  }
  if (auto st = redirectStdio(control.get()); !st) {
    report(st.error().message);
    return kShimExitFailed;
  }
  Relay relay{LogStream("stdout", STDOUT_FILENO, options.log_max_bytes),
              LogStream("stderr", STDERR_FILENO, options.log_max_bytes)};
  for (LogStream* stream : {&relay.out, &relay.err}) {
    if (auto st = stream->open(); !st) {
      report(st.error().message);
      return kShimExitFailed;
    }
  }
  // The agent started us with these blocked already; blocking them again
  // covers a shim started by hand. Blocked, a signal sent while the command
  // starts is queued for forwarding rather than acted on (SIG_DFL for SIGTERM
  // would kill us).
  sigset_t forwarded;
  ::sigemptyset(&forwarded);
  for (const int sig : shimForwardedSignals()) {
    ::signal(sig, SIG_DFL);  // an inherited SIG_IGN would discard the notice
    ::sigaddset(&forwarded, sig);
  }
  if (::sigprocmask(SIG_BLOCK, &forwarded, nullptr) != 0) {
    report(std::string("sigprocmask: ") + std::strerror(errno));
    return kShimExitFailed;
  }
  os::FileDescriptor signal_fd(::signalfd(-1, &forwarded, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd) {
    report(std::string("signalfd: ") + std::strerror(errno));
    return kShimExitFailed;
  }

  const SystemClock clock;
  StartedCommand command;
  const WallMs started_at = clock.wallNowMs();
  if (auto st = startCommand(options, *identity, std::move(*env), relay, command); !st) {
    report("starting " + options.argv.front() + ": " + st.error().message);
    return kShimExitFailed;
  }
  const bool exec_failed = command.failure && command.failure->step == ChildStep::kExec;
  auto info = superviseCommand(command, command.failure ? -1 : signal_fd.get(), relay);
  if (!info) {
    report(info.error().message);
    return kShimExitFailed;
  }
  if (command.failure && !exec_failed) {
    report(describeFailure(*command.failure, *identity));
    const ChildStep step = command.failure->step;
    const bool system_failure = step == ChildStep::kChdir || step == ChildStep::kStdio || step == ChildStep::kCgroup;
    return system_failure ? kShimExitFailed : kShimExitRefused;
  }
  ExecStatus status;
  status.pid = command.pid;
  status.started_at = started_at;
  status.ended_at = clock.wallNowMs();
  status.log_max_bytes = options.log_max_bytes;
  if (exec_failed) {
    status.exit_code = 127;
    status.error = "exec " + options.argv.front() + ": " + std::strerror(command.failure->err);
  } else if (info->si_code == CLD_EXITED) {
    status.exit_code = info->si_status;
  } else {
    status.signal = signalName(info->si_status);  // CLD_KILLED or CLD_DUMPED
  }
  // All the command wrote is in the pipes by now (a write into a full pipe
  // would still hold it): relay that before the status counts the drops.
  relay.out.pump(kPumpBudget);
  relay.err.pump(kPumpBudget);
  status.stdout_dropped = relay.out.dropped();
  status.stderr_dropped = relay.err.dropped();
  if (options.limit_hits) status.limit_hits = options.limit_hits();
  if (auto st = writeExecStatus(options.control_dir, status); !st) {
    report("writing status: " + st.error().message);
    return kShimExitFailed;
  }
  // Written before the leftovers' grace, so that a kill meanwhile still
  // finds the command's outcome; written again if they had more dropped, or
  // the command's leftovers hit a limit meanwhile.
  relayLeftovers(relay, clock);
  const auto hits_after = options.limit_hits ? std::optional<LimitHits>(options.limit_hits()) : std::nullopt;
  if (relay.out.dropped() != status.stdout_dropped || relay.err.dropped() != status.stderr_dropped ||
      hits_after != status.limit_hits) {
    status.stdout_dropped = relay.out.dropped();
    status.stderr_dropped = relay.err.dropped();
    status.limit_hits = hits_after;
    if (auto st = writeExecStatus(options.control_dir, status); !st) report("writing status: " + st.error().message);
  }
  return kShimExitOk;
}

}  // namespace

const std::vector<int>& shimForwardedSignals() {
  // SIGCONT wakes a stopped command so that it can handle the notice.
  static const std::vector<int> kSignals = {SIGTERM, SIGINT,  SIGHUP,   SIGQUIT, SIGUSR1,
                                            SIGUSR2, SIGALRM, SIGWINCH, SIGPWR,  SIGCONT};
  return kSignals;
}

Result<ShimOptions> parseShimArgs(const std::vector<std::string>& args) {
  ShimOptions options;
  bool have_control = false;
  bool have_work = false;
  bool have_user = false;
  bool have_cap = false;
  bool have_separator = false;
  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--") {
      have_separator = true;
      ++i;
      break;
    }
    if (flag != "--control-dir" && flag != "--work-dir" && flag != "--run-as" && flag != "--log-max-bytes") {
      return invalid("unknown option '" + flag + "'");
    }
    if (i + 1 >= args.size()) return invalid(flag + " needs a value");
    const std::string& value = args[++i];
    if (hasNul(value)) return invalid(flag + " value contains a NUL byte");
    if (flag == "--control-dir") {
      if (std::exchange(have_control, true)) return invalid("--control-dir given twice");
      options.control_dir = value;
    } else if (flag == "--work-dir") {
      if (std::exchange(have_work, true)) return invalid("--work-dir given twice");
      options.work_dir = value;
    } else if (flag == "--log-max-bytes") {
      if (std::exchange(have_cap, true)) return invalid("--log-max-bytes given twice");
      const char* end = value.data() + value.size();
      const auto [ptr, ec] = std::from_chars(value.data(), end, options.log_max_bytes);
      if (value.empty() || value.front() == '+' || ec != std::errc() || ptr != end || options.log_max_bytes == 0 ||
          options.log_max_bytes > kMaxLogMaxBytes) {
        return invalid("--log-max-bytes must be a number of bytes from 1 to " + std::to_string(kMaxLogMaxBytes));
      }
    } else {
      if (std::exchange(have_user, true)) return invalid("--run-as given twice");
      options.run_as = value;
    }
  }
  if (!have_control) return invalid("--control-dir is required");
  if (!options.control_dir.is_absolute()) return invalid("--control-dir must be an absolute path");
  if (!have_work) return invalid("--work-dir is required");
  if (!options.work_dir.is_absolute()) return invalid("--work-dir must be an absolute path");
  if (!have_user || options.run_as.empty()) return invalid("--run-as is required");
  if (!have_separator) return invalid("missing '--' before the command");
  options.argv.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (options.argv.empty()) return invalid("no command after '--'");
  // execve does no PATH search; a relative argv[0] would resolve against the work dir.
  if (!std::filesystem::path(options.argv.front()).is_absolute()) {
    return invalid("command '" + options.argv.front() + "' is not an absolute path");
  }
  for (const auto& arg : options.argv) {
    if (hasNul(arg)) return invalid("command argument contains a NUL byte");
  }
  return options;
}

Status writeShimEnvFile(const std::filesystem::path& control_dir, const std::vector<std::string>& env) {
  std::string text;
  for (const auto& entry : env) {
    const auto eq = entry.find('=');
    if (hasNul(entry) || eq == std::string::npos || eq == 0) return invalid("an environment entry is not K=V");
    text.append(entry).push_back('\0');
  }
  if (text.size() > kMaxEnvFileBytes) return invalid("the environment is larger than 1 MiB");
  os::FileDescriptor dir(::open(control_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return os::sysError("open " + control_dir.string());
  ::unlinkat(dir.get(), kEnvFileName, 0);
  os::FileDescriptor fd(::openat(dir.get(), kEnvFileName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return os::sysError("create " + (control_dir / kEnvFileName).string());
  std::string_view rest = text;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd.get(), rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::unlinkat(dir.get(), kEnvFileName, 0);
      return os::sysError("write " + (control_dir / kEnvFileName).string(), err);
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  return okStatus();
}

Result<std::vector<std::string>> takeShimEnvFile(const std::filesystem::path& control_dir) {
  os::FileDescriptor control(::open(control_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!control) return os::sysError("open " + control_dir.string());
  return takeEnvFile(control.get());
}

int runExecShim(const ShimOptions& options) {
  // main() dispatches here before its own try block; nothing may escape.
  try {
    return runShim(options);
  } catch (const std::exception& e) {
    report(e.what());
    return kShimExitFailed;
  }
}

}  // namespace phonefarm::exec
