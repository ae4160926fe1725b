// Implementation of process_spawner.hpp. The code between clone and exec runs
// in a copy of a (possibly multi-threaded) agent, so it makes only
// async-signal-safe calls on data prepared before the clone: no allocation,
// no locks, no C++ library. Failures there travel back over a close-on-exec
// pipe that stays silent when exec succeeds.
#include "agent/exec/process_spawner.hpp"

#include <fcntl.h>
#include <linux/sched.h>  // struct clone_args, CLONE_INTO_CGROUP
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string_view>
#include <system_error>

#include "agent/exec/signal_names.hpp"
#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::exec {
namespace {

enum class ChildStage : int { kJoinCgroup = 1, kSetsid, kStdio, kExec, kJoinExtraCgroup };

struct ChildFailure {
  int stage;
  int err;
  int index = 0;  // kJoinExtraCgroup: which of join_cgroups
};

// Everything the child needs, computed before the clone.
struct ChildPlan {
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int stdio[3] = {-1, -1, -1};
  int cgroup_procs_fd = -1;                                // fork fallback only: the child writes "0" (itself) here
  int join_procs_fds[kMaxJoinCgroups] = {-1, -1, -1, -1};  // cgroup.procs of join_cgroups
  int report_fd = -1;                                      // write end of the close-on-exec failure pipe, >= 3
  unsigned max_fd = 0;                                     // upper bound for the close loop when close_range is missing
  bool new_session = true;
  sigset_t mask{};  // the child's signal mask at exec
};

[[noreturn]] void failChild(const ChildPlan& plan, ChildStage stage, int err, int index = 0) {
  const ChildFailure failure{static_cast<int>(stage), err, index};
  // A pipe write this small is atomic; if it fails the parent sees EOF and a
  // 127 exit, which is all we could say anyway.
  [[maybe_unused]] const auto written = ::write(plan.report_fd, &failure, sizeof failure);
  ::_exit(127);
}

void closeRange(unsigned first, unsigned last, unsigned max_fd) {
  if (first > last) return;
  if (::syscall(SYS_close_range, first, last, 0U) == 0) return;
  // Kernel < 5.9: close one by one up to the descriptor limit.
  for (unsigned fd = first; fd <= last && fd <= max_fd; ++fd) ::close(static_cast<int>(fd));
}

[[noreturn]] void runChild(const ChildPlan& plan) {
  if (plan.cgroup_procs_fd >= 0 && ::write(plan.cgroup_procs_fd, "0", 1) != 1) {
    failChild(plan, ChildStage::kJoinCgroup, errno);
  }
  for (int i = 0; i < static_cast<int>(kMaxJoinCgroups); ++i) {
    if (plan.join_procs_fds[i] >= 0 && ::write(plan.join_procs_fds[i], "0", 1) != 1) {
      failChild(plan, ChildStage::kJoinExtraCgroup, errno, i);
    }
  }
  if (plan.new_session && ::setsid() < 0) failChild(plan, ChildStage::kSetsid, errno);
  // Lift every source above 2 first, so aliasing among them (stdout and
  // stderr swapped, say) cannot clobber one before it is copied.
  int lifted[3];
  for (int i = 0; i < 3; ++i) {
    lifted[i] = ::fcntl(plan.stdio[i], F_DUPFD_CLOEXEC, 3);
    if (lifted[i] < 0) failChild(plan, ChildStage::kStdio, errno);
  }
  for (int i = 0; i < 3; ++i) {
    if (::dup2(lifted[i], i) < 0) failChild(plan, ChildStage::kStdio, errno);
  }
  // exec resets handlers but keeps SIG_IGN and the mask; work must start with
  // neither inherited from the agent (an ignored SIGPIPE, a blocked SIGTERM).
  // sigaction fails harmlessly for SIGKILL, SIGSTOP and libc-reserved ones.
  // The child was created with every signal blocked, so none can act on it
  // before its mask becomes the requested one here.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  ::sigprocmask(SIG_SETMASK, &plan.mask, nullptr);
  // Keep only stdio and the report pipe (close-on-exec: gone at exec).
  const auto report = static_cast<unsigned>(plan.report_fd);
  closeRange(3, report - 1, plan.max_fd);
  closeRange(report + 1, ~0U, plan.max_fd);
  ::execve(plan.path, plan.argv, plan.envp);
  failChild(plan, ChildStage::kExec, errno);
}

std::string stageContext(ChildStage stage, int index, const SpawnRequest& request) {
  switch (stage) {
    case ChildStage::kJoinExtraCgroup:
      if (index >= 0 && static_cast<std::size_t>(index) < request.join_cgroups.size()) {
        return "join cgroup " + (request.join_cgroups[static_cast<std::size_t>(index)] / "cgroup.procs").string();
      }
      return "join cgroup";
    case ChildStage::kJoinCgroup:
      return "join cgroup " + (*request.cgroup / "cgroup.procs").string();
    case ChildStage::kSetsid:
      return "setsid in child of " + request.argv[0];
    case ChildStage::kStdio:
      return "set up stdio for " + request.argv[0];
    case ChildStage::kExec:
      return "exec " + request.argv[0];
  }
  return "start " + request.argv[0];
}

Status validate(const SpawnRequest& request) {
  if (request.argv.empty() || request.argv[0].empty()) return makeError(ErrorKind::kInvalid, "spawn: empty argv");
  for (const auto& arg : request.argv) {
    if (arg.find('\0') != std::string::npos) return makeError(ErrorKind::kInvalid, "spawn: NUL byte in argv");
  }
  for (const auto& entry : request.env) {
    if (entry.find('\0') != std::string::npos || entry.find('=') == std::string::npos) {
      return makeError(ErrorKind::kInvalid, "spawn: env entry is not K=V: " + entry.substr(0, entry.find('\0')));
    }
  }
  if (request.join_cgroups.size() > kMaxJoinCgroups) {
    return makeError(ErrorKind::kInvalid, "spawn: more than " + std::to_string(kMaxJoinCgroups) + " cgroups to join");
  }
  return okStatus();
}

std::vector<char*> cArray(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  // execve takes char* const[] but never writes through it.
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

enum class CloneMethod { kClone3, kFork };

// One attempt. `clone3_unsupported` is set when clone3 (or CLONE_INTO_CGROUP)
// does not exist here, so the caller may retry with kFork.
Result<Spawned> spawnWith(const SpawnRequest& request, CloneMethod method, bool& clone3_unsupported) {
  clone3_unsupported = false;
  if (auto valid = validate(request); !valid) return valid.error();
  const auto argv = cArray(request.argv);
  const auto envp = cArray(request.env);

  os::FileDescriptor devnull;
  if (request.stdin_fd < 0 || request.stdout_fd < 0 || request.stderr_fd < 0) {
    devnull.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (devnull.get() < 0) return os::sysError("open /dev/null", errno);
  }
  os::FileDescriptor cgroup_dir;
  os::FileDescriptor cgroup_procs;
  if (request.cgroup && method == CloneMethod::kClone3) {
    cgroup_dir.reset(::open(request.cgroup->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (cgroup_dir.get() < 0) return os::sysError("open cgroup " + request.cgroup->string(), errno);
  } else if (request.cgroup) {
    const auto procs = *request.cgroup / "cgroup.procs";
    cgroup_procs.reset(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (cgroup_procs.get() < 0) return os::sysError("open " + procs.string(), errno);
  }
  // Opened here, written in the child: open() is not for the child to do.
  os::FileDescriptor join_procs[kMaxJoinCgroups];
  for (std::size_t i = 0; i < request.join_cgroups.size(); ++i) {
    const auto procs = request.join_cgroups[i] / "cgroup.procs";
    join_procs[i].reset(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (join_procs[i].get() < 0) return os::sysError("open " + procs.string(), errno);
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return os::sysError("pipe2", errno);
  os::FileDescriptor report_read(pipe_fds[0]);
  // The write end must survive the child's dup2 onto 0..2 (an agent started
  // with closed stdio gets low numbers from pipe2).
  os::FileDescriptor report_write(::fcntl(pipe_fds[1], F_DUPFD_CLOEXEC, 3));
  ::close(pipe_fds[1]);
  if (report_write.get() < 0) return os::sysError("fcntl(F_DUPFD_CLOEXEC)", errno);

  ChildPlan plan;
  plan.path = argv[0];
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.stdio[0] = request.stdin_fd >= 0 ? request.stdin_fd : devnull.get();
  plan.stdio[1] = request.stdout_fd >= 0 ? request.stdout_fd : devnull.get();
  plan.stdio[2] = request.stderr_fd >= 0 ? request.stderr_fd : devnull.get();
  plan.cgroup_procs_fd = cgroup_procs.get();
  for (std::size_t i = 0; i < kMaxJoinCgroups; ++i) plan.join_procs_fds[i] = join_procs[i].get();
  plan.report_fd = report_write.get();
  const long open_max = ::sysconf(_SC_OPEN_MAX);
  plan.max_fd = open_max > 0 && open_max < 65536 ? static_cast<unsigned>(open_max) : 65536U;
  plan.new_session = request.new_session;
  ::sigemptyset(&plan.mask);
  for (const int sig : request.blocked_signals) ::sigaddset(&plan.mask, sig);

  // Block all signals across the clone: until the child has reset them, one
  // of the agent's handlers must not run in it.
  sigset_t all;
  sigset_t saved;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &saved);
  int pidfd = -1;
  long pid = -1;
  int clone_errno = 0;
  if (method == CloneMethod::kClone3) {
    clone_args args{};
    args.flags = CLONE_PIDFD;
    args.pidfd = reinterpret_cast<std::uint64_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    if (request.cgroup) {
      args.flags |= CLONE_INTO_CGROUP;
      args.cgroup = static_cast<std::uint64_t>(cgroup_dir.get());
    }
    pid = ::syscall(SYS_clone3, &args, sizeof args);
  } else {
    pid = ::fork();
  }
  if (pid == 0) runChild(plan);
  clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (pid < 0) {
    // ENOSYS: no clone3 (or seccomp hides it); EINVAL/E2BIG: a kernel that
    // predates CLONE_INTO_CGROUP rejecting the flag or the larger struct.
    clone3_unsupported = method == CloneMethod::kClone3 &&
                         (clone_errno == ENOSYS || (request.cgroup && (clone_errno == EINVAL || clone_errno == E2BIG)));
    const std::string call = method == CloneMethod::kClone3 ? "clone3" : "fork";
    return os::sysError(request.cgroup ? call + " into cgroup " + request.cgroup->string() : call, clone_errno);
  }
  report_write.reset();
  if (method == CloneMethod::kFork) {
    // Cannot race a pid reuse: the child is ours and not yet reaped. ENOSYS
    // (kernel < 5.3) leaves pidfd at -1 and the caller on the pid.
    const long fd = ::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0U);
    if (fd >= 0) {
      pidfd = static_cast<int>(fd);
    } else if (errno != ENOSYS) {
      const int err = errno;
      ::kill(static_cast<pid_t>(pid), SIGKILL);
      ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
      return os::sysError("pidfd_open(" + std::to_string(pid) + ")", err);
    }
  }

  ChildFailure failure{};
  ssize_t got;
  do {
    got = ::read(report_read.get(), &failure, sizeof failure);
  } while (got < 0 && errno == EINTR);
  if (got == 0) return Spawned{static_cast<pid_t>(pid), pidfd};

  // The child failed before exec and is exiting with 127: reap it. If the
  // report could not be read at all its fate is unknown: make sure it ends.
  const int read_errno = errno;
  if (got < 0) pidfd >= 0 ? (void)signalPidfd(pidfd, SIGKILL) : (void)::kill(static_cast<pid_t>(pid), SIGKILL);
  siginfo_t info{};
  if (pidfd >= 0) {
    ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED);
    ::close(pidfd);
  } else {
    ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED);
  }
  if (got != static_cast<ssize_t>(sizeof failure)) {
    return got < 0 ? os::sysError("read spawn report", read_errno)
                   : makeError(ErrorKind::kInternal, "spawn " + request.argv[0] + ": short report from child");
  }
  return os::sysError(stageContext(static_cast<ChildStage>(failure.stage), failure.index, request), failure.err);
}

}  // namespace

Result<Spawned> spawnProcess(const SpawnRequest& request) {
  bool clone3_unsupported = false;
  auto spawned = spawnWith(request, CloneMethod::kClone3, clone3_unsupported);
  if (spawned || !clone3_unsupported) return spawned;
  return spawnWith(request, CloneMethod::kFork, clone3_unsupported);
}

Result<Spawned> spawnProcessWithFork(const SpawnRequest& request) {
  bool unused = false;
  return spawnWith(request, CloneMethod::kFork, unused);
}

Result<int> openPidfd(pid_t pid) {
  const long fd = ::syscall(SYS_pidfd_open, pid, 0U);
  if (fd < 0) return os::sysError("pidfd_open(" + std::to_string(pid) + ")", errno);
  return static_cast<int>(fd);
}

Status signalPidfd(int pidfd, int sig) {
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0U) != 0) {
    return os::sysError("pidfd_send_signal(" + signalName(sig) + ")", errno);
  }
  return okStatus();
}

Result<std::optional<ExitStatus>> reapIfExited(int pidfd, pid_t pid) {
  siginfo_t info{};
  int rc = -1;
  if (pidfd >= 0) {
    rc = ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG);
  }
  // P_PIDFD needs kernel 5.4; a pidfd from 5.3 still has its pid.
  if (pidfd < 0 || (rc != 0 && errno == EINVAL)) {
    rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG);
  }
  if (rc != 0) return os::sysError("waitid(" + std::to_string(pid) + ")", errno);
  if (info.si_pid == 0) return std::optional<ExitStatus>{};
  ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.code = info.si_status;
  } else {
    status.signal = info.si_status;
    status.core_dumped = info.si_code == CLD_DUMPED;
  }
  return std::optional<ExitStatus>{status};
}

}  // namespace phonefarm::exec
