// The exec shim (see the header). Order of work: become the run_as user
// with no capability left, chdir to the exec dir, point fds 0-2 at /dev/null
// and the two logs, block the forwarded signals and read them from a
// signalfd, fork+execve the command, forward signals to it through its pidfd
// until it exits, then write status.json atomically. Everything between fork
// and execve in the child is async-signal-safe, as the shim may run in a fork
// of a larger process (the unit tests run it that way).
#include "agent/exec/exec_shim.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/exec/capabilities.hpp"
#include "agent/exec/exec_status.hpp"
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

// Becomes the run_as user for good, whoever started the shim: root (an agent
// run as root), an unprivileged agent holding CAP_SETUID and CAP_SETGID
// (systemd User=phonefarm with ambient capabilities), or run_as itself (tests,
// manual runs). Refuses root and unknown users. setuid() clears capabilities
// only when it leaves uid 0, so the shim clears them itself; then it proves
// the drop (ids, groups, /proc/self/status, no way back) before any of the
// work runs.
Status becomeRunAsUser(const std::string& user) {
  auto entry = os::lookupUser(user);
  if (!entry) return entry.error();
  if (!*entry) return invalid("run_as user '" + user + "' does not exist");
  const os::UserEntry& account = **entry;
  if (account.uid == 0) return invalid("refusing to run work as root (run_as user '" + user + "' has uid 0)");

  uid_t caller_ruid = 0, caller_euid = 0, caller_suid = 0;
  ::getresuid(&caller_ruid, &caller_euid, &caller_suid);
  const bool already_run_as = caller_ruid == account.uid && caller_euid == account.uid && caller_suid == account.uid;
  if (!already_run_as) {
    auto cannot = [&](const std::string& call) {
      const int err = errno;
      return os::sysError("running as uid " + uidText(caller_euid) + ", cannot switch to run_as user '" + user +
                              "' (uid " + uidText(account.uid) + "; needs root or CAP_SETUID and CAP_SETGID): " + call,
                          err);
    };
    // Groups before uid: once setuid has run there is no privilege left to
    // change them, and the caller's supplementary groups must not leak into
    // the work.
    if (::initgroups(user.c_str(), account.gid) != 0) return cannot("initgroups");
    if (::setgid(account.gid) != 0) return cannot("setgid " + std::to_string(account.gid));
    if (::setuid(account.uid) != 0) return cannot("setuid " + uidText(account.uid));
  }
  if (auto dropped = dropAllCapabilities(); !dropped) return dropped.error();

  // Verify instead of trusting the calls: a partial drop must stop the work.
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  ::getresuid(&ruid, &euid, &suid);
  ::getresgid(&rgid, &egid, &sgid);
  if (ruid != account.uid || euid != account.uid || suid != account.uid) {
    return invalid("uids are " + uidText(ruid) + "/" + uidText(euid) + "/" + uidText(suid) + " after dropping to '" +
                   user + "' (uid " + uidText(account.uid) + ")");
  }
  if (rgid == 0 || egid == 0 || sgid == 0) {
    return invalid("privileges still include root after dropping to '" + user + "' (gid 0)");
  }
  const int ngroups = ::getgroups(0, nullptr);
  std::vector<gid_t> groups(ngroups > 0 ? static_cast<std::size_t>(ngroups) : 0);
  if (ngroups > 0 && ::getgroups(ngroups, groups.data()) != ngroups) return os::sysError("getgroups");
  for (const gid_t gid : groups) {
    if (gid == 0) return invalid("privileges still include root after dropping to '" + user + "' (group 0)");
  }
  if (auto none = checkNoCapabilities(); !none) return none.error();
  if (::setuid(0) == 0) return invalid("could regain root after dropping to '" + user + "'");
  for (const uid_t caller : {caller_ruid, caller_euid, caller_suid}) {
    if (caller != account.uid && ::setuid(caller) == 0) {
      return invalid("could switch back to uid " + uidText(caller) + " after dropping to '" + user + "'");
    }
  }
  return okStatus();
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

// Opens in the cwd (the exec dir), as the run_as user so the files are theirs;
// 0640 with run_as's group, which the agent is a member of, so it can read them.
Status redirectStdio() {
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return os::sysError("open /dev/null");
  const int out_fd = ::open(kStdoutLogName, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (out_fd < 0) return os::sysError(std::string("open ") + kStdoutLogName);
  const int err_fd = ::open(kStderrLogName, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (err_fd < 0) return os::sysError(std::string("open ") + kStderrLogName);
  // Opened lowest-free-first, so no later source fd can be an earlier target.
  for (auto [fd, target] : {std::pair{null_fd, 0}, std::pair{out_fd, 1}, std::pair{err_fd, 2}}) {
    if (auto st = moveFd(fd, target); !st) return st;
  }
  return okStatus();
}

// The child between fork and execve: async-signal-safe calls only.
[[noreturn]] void execCommand(char* const argv[], char* const envp[], int error_fd) {
  // Handlers are reset by execve anyway, but SIG_IGN and the blocked mask are
  // inherited; the command starts from the defaults whatever the agent had.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Whatever fds leaked into the shim do not reach the work.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  ::execve(argv[0], argv, envp);
  const int err = errno;
  if (::write(error_fd, &err, sizeof err) < 0) {
    // Nothing to do: the parent then sees exit 127 without a reason.
  }
  ::_exit(127);
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
  std::optional<int> exec_errno;  // set when execve failed in the child
};

Status startCommand(const ShimOptions& options, StartedCommand& started) {
  std::vector<std::string> argv_storage = options.argv;
  std::vector<std::string> env_storage = options.env;
  const std::vector<char*> argv = cStrings(argv_storage);
  const std::vector<char*> envp = cStrings(env_storage);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return os::sysError("pipe2");
  os::FileDescriptor read_end(pipe_fds[0]);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipe_fds[1]);
    return os::sysError("fork");
  }
  if (pid == 0) execCommand(argv.data(), envp.data(), pipe_fds[1]);
  ::close(pipe_fds[1]);
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
  // The pipe closes on a successful execve (CLOEXEC) or carries its errno.
  int err = 0;
  ssize_t n = 0;
  do {
    n = ::read(read_end.get(), &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof err)) started.exec_errno = err;
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

// Forwards signals until the pidfd reports the exit, then reaps the command.
Result<siginfo_t> superviseCommand(const StartedCommand& command, int signal_fd) {
  pollfd fds[2] = {{signal_fd, POLLIN, 0}, {command.pidfd.get(), POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      // Forwarding is lost, but the exit status still matters more: reap.
      report(std::string("poll: ") + std::strerror(errno));
      break;
    }
    if (fds[0].revents & POLLIN) forwardPendingSignals(signal_fd, command.pidfd.get());
    if (fds[1].revents != 0) break;
  }
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(command.pid), &info, WEXITED) != 0) {
    if (errno != EINTR) return os::sysError("waitid");
  }
  return info;
}

int runShim(const ShimOptions& options) {
  if (options.argv.empty() || !options.exec_dir.is_absolute()) {
    report("options not validated by parseShimArgs");
    return kShimExitRefused;
  }
  // Writes to a log or to a pipe the agent has closed must not kill the shim;
  // the command gets SIGPIPE back at SIG_DFL in execCommand.
  ::signal(SIGPIPE, SIG_IGN);
  if (auto st = becomeRunAsUser(options.run_as); !st) {
    report(st.error().message);
    return kShimExitRefused;
  }
  if (::chdir(options.exec_dir.c_str()) != 0) {
    report("chdir " + options.exec_dir.string() + ": " + std::strerror(errno));
    return kShimExitFailed;
  }
  if (auto st = redirectStdio(); !st) {
    report(st.error().message);
    return kShimExitFailed;
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
  if (auto st = startCommand(options, command); !st) {
    report("starting " + options.argv.front() + ": " + st.error().message);
    return kShimExitFailed;
  }
  auto info = command.exec_errno ? superviseCommand(command, -1) : superviseCommand(command, signal_fd.get());
  if (!info) {
    report(info.error().message);
    return kShimExitFailed;
  }
  ExecStatus status;
  status.pid = command.pid;
  status.started_at = started_at;
  status.ended_at = clock.wallNowMs();
  if (command.exec_errno) {
    status.exit_code = 127;
    status.error = "exec " + options.argv.front() + ": " + std::strerror(*command.exec_errno);
  } else if (info->si_code == CLD_EXITED) {
    status.exit_code = info->si_status;
  } else {
    status.signal = signalName(info->si_status);  // CLD_KILLED or CLD_DUMPED
  }
  if (auto st = writeExecStatus(options.exec_dir, status); !st) {
    report("writing status: " + st.error().message);
    return kShimExitFailed;
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
  bool have_dir = false;
  bool have_user = false;
  bool have_separator = false;
  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--") {
      have_separator = true;
      ++i;
      break;
    }
    if (flag != "--exec-dir" && flag != "--run-as" && flag != "--env") return invalid("unknown option '" + flag + "'");
    if (i + 1 >= args.size()) return invalid(flag + " needs a value");
    const std::string& value = args[++i];
    if (hasNul(value)) return invalid(flag + " value contains a NUL byte");
    if (flag == "--env") {
      const auto eq = value.find('=');
      if (eq == std::string::npos || eq == 0) return invalid("--env '" + value + "' is not K=V");
      options.env.push_back(value);
    } else if (flag == "--exec-dir") {
      if (std::exchange(have_dir, true)) return invalid("--exec-dir given twice");
      options.exec_dir = value;
    } else {
      if (std::exchange(have_user, true)) return invalid("--run-as given twice");
      options.run_as = value;
    }
  }
  if (!have_dir) return invalid("--exec-dir is required");
  if (!options.exec_dir.is_absolute()) return invalid("--exec-dir must be an absolute path");
  if (!have_user || options.run_as.empty()) return invalid("--run-as is required");
  if (!have_separator) return invalid("missing '--' before the command");
  options.argv.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (options.argv.empty()) return invalid("no command after '--'");
  // execve does no PATH search; a relative argv[0] would resolve against the exec dir.
  if (!std::filesystem::path(options.argv.front()).is_absolute()) {
    return invalid("command '" + options.argv.front() + "' is not an absolute path");
  }
  for (const auto& arg : options.argv) {
    if (hasNul(arg)) return invalid("command argument contains a NUL byte");
  }
  return options;
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
