// startAdbServer and adbBinaryVersion; see adb_server_launcher.hpp. Both run
// the adb binary through runAdb, whose child drops the agent's capabilities,
// signal state and descriptors before it execs adb.
#include "agent/phone/adb_server_launcher.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <optional>
#include <string_view>

#include "agent/phone/adb_host_connection.hpp"
#include "agent/phone/adb_text.hpp"
#include "common/os/sys_error.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace phonefarm::phone {
namespace {

using adb_text::printable;
using adb_text::startsWith;
using adb_text::unavailable;
using os::errnoText;

constexpr std::size_t kMaxChildOutput = 4096;

// Drains what the pipe holds now (non-blocking) into `out`, keeping the first
// kMaxChildOutput bytes. False at EOF or on an error.
bool drainPipe(int fd, std::string& out) {
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      const auto room = kMaxChildOutput - std::min(out.size(), kMaxChildOutput);
      out.append(buffer, std::min(room, static_cast<std::size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

std::string exitText(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with status " + std::to_string(status);
}

// The adb child between fork and exec: only async-signal-safe system calls
// (the agent has other threads; nothing here may allocate). It clears the
// capabilities the agent holds for the exec shim (the unit's
// AmbientCapabilities=) so the adb server runs with none, resets the signal
// mask and dispositions, starts a session of its own, and keeps no
// descriptor of the agent's (the server it forks outlives the call: it must
// not hold the listening sockets, pidfds or store files).
[[noreturn]] void execAdbChild(const char* path, char* const argv[], char* const envp[], int out_fd) {
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct no_caps[2] = {};
  ::syscall(SYS_capset, &header, no_caps);  // and the inheritable, permitted, effective sets
  sigset_t none;
  sigemptyset(&none);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd < 0 || ::dup2(null_fd, STDIN_FILENO) < 0 || ::dup2(out_fd, STDOUT_FILENO) < 0 ||
      ::dup2(out_fd, STDERR_FILENO) < 0) {
    ::_exit(127);
  }
  ::syscall(SYS_close_range, STDERR_FILENO + 1, ~0U, 0);
  ::execve(path, argv, envp);
  static constexpr char kMessage[] = "exec of the adb binary failed\n";
  (void)!::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  ::_exit(127);
}

// Runs `adb_path args...` as execAdbChild sets it up and waits (bounded by
// `timeout` and `wake_fd`) for it to exit. ok with its output (capped) when
// it exited 0, or when its status was lost (see startAdbServer); errors name
// `what`, with the output.
Result<std::string> runAdb(const std::string& adb_path, const std::vector<std::string>& args, const std::string& what,
                           std::chrono::milliseconds timeout, const std::vector<std::string>& env_overrides,
                           int wake_fd) {
  if (adb_path.empty()) return makeError(ErrorKind::kInvalid, what + ": no adb binary configured");
  // The inherited environment minus the overridden names, then the overrides.
  std::vector<std::string> env;
  for (const auto& entry : env_overrides) {
    if (entry.find('=') == std::string::npos || entry.front() == '=') {
      return makeError(ErrorKind::kInvalid, what + ": environment entry '" + printable(entry) + "' is not K=V");
    }
  }
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('=') + 1);
    const bool overridden = std::any_of(env_overrides.begin(), env_overrides.end(),
                                        [&](const std::string& o) { return startsWith(o, name); });
    if (!overridden) env.emplace_back(entry);
  }
  env.insert(env.end(), env_overrides.begin(), env_overrides.end());
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (auto& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> arg_storage{adb_path};
  arg_storage.insert(arg_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(arg_storage.size() + 1);
  for (auto& arg : arg_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return unavailable(what + ": pipe: " + errnoText(errno));
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);  // only our end: adb's writes may block
  // Checked here because the child can only report an exec failure as exit 127.
  if (::access(adb_path.c_str(), X_OK) != 0) {
    const int err = errno;
    ::close(out[0]);
    ::close(out[1]);
    return makeError(err == ENOENT ? ErrorKind::kNotFound : ErrorKind::kUnavailable,
                     what + ": cannot run " + adb_path + ": " + errnoText(err));
  }
  const pid_t pid = ::fork();
  if (pid == 0) execAdbChild(adb_path.c_str(), argv.data(), envp.data(), out[1]);
  const int fork_errno = errno;
  ::close(out[1]);
  if (pid < 0) {
    ::close(out[0]);
    return unavailable(what + ": fork: " + errnoText(fork_errno));
  }

  // Wait for the exit, not for EOF: the forked server holds the pipe until it
  // redirects its own output.
  const auto deadline = AdbDeadline::after(timeout);
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  std::string output;
  bool pipe_open = true;
  int status = 0;
  // ECHILD: someone else reaped it (the daemon, as child subreaper, reaps
  // zombies it does not supervise). It has exited; its status is lost, and
  // the caller finds out by connecting.
  bool status_lost = false;
  std::optional<std::string> failure;
  for (;;) {
    const pid_t reaped = ::waitpid(pid, &status, WNOHANG);
    if (reaped == pid) break;
    if (reaped < 0 && errno == ECHILD) {
      status_lost = true;
      break;
    }
    if (reaped < 0 && errno != EINTR) {
      failure = "waitpid: " + errnoText(errno);
      break;
    }
    int wait_ms = deadline.pollTimeoutMs();
    if (wait_ms == 0 && deadline.passed()) {
      failure = adb_text::timedOut(deadline.budget, "waiting for it");
      break;
    }
    if (pidfd < 0) wait_ms = std::min(wait_ms, 10);  // no pidfds (kernel < 5.3): poll the exit
    pollfd fds[3] = {{pipe_open ? out[0] : -1, POLLIN, 0}, {pidfd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (::poll(fds, 3, wait_ms) < 0 && errno != EINTR) {
      failure = "poll: " + errnoText(errno);
      break;
    }
    if (fds[2].revents != 0) {
      failure = "interrupted";
      break;
    }
    if (fds[0].revents != 0) pipe_open = drainPipe(out[0], output);
  }
  if (failure) {
    // Through the pidfd when there is one: if the child was reaped meanwhile
    // its pid may belong to someone else already.
    if (pidfd >= 0) {
      ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    } else {
      ::kill(pid, SIGKILL);
    }
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (pipe_open) drainPipe(out[0], output);
  ::close(out[0]);
  if (pidfd >= 0) ::close(pidfd);
  const std::string shown = output.empty() ? std::string() : "; output: " + printable(output);
  if (failure) return unavailable(what + ": " + *failure + shown);
  if (status_lost) return output;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return unavailable(what + ": adb " + exitText(status) + shown);
  return output;
}

}  // namespace

Status startAdbServer(const std::string& adb_path, const AdbEndpoint& endpoint, std::chrono::milliseconds timeout,
                      const std::vector<std::string>& env_overrides) {
  return startAdbServer(adb_path, endpoint, timeout, env_overrides, -1);
}

Status startAdbServer(const std::string& adb_path, const AdbEndpoint& endpoint, std::chrono::milliseconds timeout,
                      const std::vector<std::string>& env_overrides, int wake_fd) {
  const std::string port = std::to_string(endpoint.port);
  auto ran = runAdb(adb_path, {"-P", port, "start-server"}, "adb start-server on port " + port, timeout, env_overrides,
                    wake_fd);
  if (!ran.ok()) return ran.error();
  return okStatus();
}

std::optional<std::string> parseAdbVersionOutput(std::string_view output) {
  static constexpr std::string_view kPrefix = "Android Debug Bridge version 1.0.";
  const auto at = output.find(kPrefix);
  if (at == std::string_view::npos) return std::nullopt;
  std::size_t end = at + kPrefix.size();
  unsigned value = 0;
  std::size_t digits = 0;
  for (; end < output.size() && output[end] >= '0' && output[end] <= '9' && digits < 5; ++end, ++digits) {
    value = value * 10 + static_cast<unsigned>(output[end] - '0');
  }
  // Five digits or a value past 0xffff: host:version could not carry it.
  if (digits == 0 || digits == 5 || value > 0xffff) return std::nullopt;
  char hex[5];
  std::snprintf(hex, sizeof hex, "%04x", value);
  return std::string(hex);
}

Result<std::string> adbBinaryVersion(const std::string& adb_path, std::chrono::milliseconds timeout,
                                     const std::vector<std::string>& env_overrides, int wake_fd) {
  const std::string what = "adb version (" + adb_path + ")";
  auto output = runAdb(adb_path, {"version"}, what, timeout, env_overrides, wake_fd);
  if (!output.ok()) return output.error();
  if (auto version = parseAdbVersionOutput(*output)) return *version;
  return unavailable(what + ": no \"Android Debug Bridge version 1.0.N\" in its output: " + printable(*output));
}

}  // namespace phonefarm::phone
