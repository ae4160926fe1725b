// AgentProcess: see agent_process.hpp. fork/exec rather than posix_spawn for
// PR_SET_PDEATHSIG and an exec-error pipe (a bad path fails the constructor
// with the real errno instead of a mysterious exit 127).
#include "tests/support/agent_process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace phonefarm::testing {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void throwErrno(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

int decodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::vector<std::string> buildEnvironment(const AgentProcess::Env& extra) {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto eq = text.find('=');
    if (eq != std::string_view::npos) env[std::string(text.substr(0, eq))] = std::string(text.substr(eq + 1));
  }
  for (const auto& [name, value] : extra) env[name] = value;
  std::vector<std::string> out;
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

AgentProcess::AgentProcess(const std::filesystem::path& binary, const std::vector<std::string>& args,
                           const std::filesystem::path& log_dir, const Env& extra_env, const std::filesystem::path& cwd,
                           int listen_fd) {
  // Everything the child needs is prepared before fork(): between fork and
  // exec in a multi-threaded process only async-signal-safe calls are allowed.
  std::vector<std::string> argv_strings{binary.string()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  auto env_with_fds = extra_env;
  constexpr std::size_t kPidDigits = 20;
  if (listen_fd >= 0) {
    env_with_fds.emplace_back("LISTEN_FDS", "1");
    env_with_fds.emplace_back("LISTEN_PID", std::string(kPidDigits, '0'));  // the child writes its pid here
  }
  auto env_strings = buildEnvironment(env_with_fds);
  char* listen_pid_digits = nullptr;
  for (auto& entry : env_strings) {
    if (listen_fd >= 0 && entry.rfind("LISTEN_PID=", 0) == 0) listen_pid_digits = entry.data() + 11;
  }
  auto argv = pointers(argv_strings);
  auto envp = pointers(env_strings);
  const std::string cwd_string = cwd.string();

  int output[2];
  int exec_error[2];
  if (::pipe2(output, O_CLOEXEC) != 0) throwErrno("pipe2");
  if (::pipe2(exec_error, O_CLOEXEC) != 0) throwErrno("pipe2");
  const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (dev_null < 0) throwErrno("open /dev/null");
  const pid_t parent = ::getpid();

  pid_ = ::fork();
  if (pid_ < 0) throwErrno("fork");
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    // Do not pass the test runner's blocked or ignored signals on.
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
    ::dup2(dev_null, STDIN_FILENO);
    ::dup2(output[1], STDOUT_FILENO);
    ::dup2(output[1], STDERR_FILENO);
    if (listen_fd >= 0) {
      // sd_listen_fds() checks LISTEN_PID against getpid(): the pid in
      // decimal, NUL-terminated inside the placeholder (async-signal-safe).
      char digits[kPidDigits];
      std::size_t n = 0;
      for (auto pid = static_cast<unsigned long>(::getpid()); pid != 0 || n == 0; pid /= 10) {
        digits[n++] = static_cast<char>('0' + pid % 10);
      }
      for (std::size_t i = 0; i < n; ++i) listen_pid_digits[i] = digits[n - 1 - i];
      listen_pid_digits[n] = '\0';
      if (listen_fd != 3 && ::dup2(listen_fd, 3) != 3) ::_exit(127);
      ::fcntl(3, F_SETFD, 0);  // dup2 clears FD_CLOEXEC, but fd 3 may already have been the socket
    }
    if (cwd_string.empty() || ::chdir(cwd_string.c_str()) == 0) ::execve(argv[0], argv.data(), envp.data());
    const int error = errno;
    [[maybe_unused]] auto n = ::write(exec_error[1], &error, sizeof error);
    ::_exit(127);
  }

  ::close(output[1]);
  ::close(exec_error[1]);
  ::close(dev_null);
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_error[0], &exec_errno, sizeof exec_errno);  // EOF: exec succeeded
  } while (n < 0 && errno == EINTR);
  ::close(exec_error[0]);
  if (n == sizeof exec_errno) {
    int status;
    ::waitpid(pid_, &status, 0);
    ::close(output[0]);
    throw std::system_error(exec_errno, std::generic_category(),
                            "exec " + binary.string() + (cwd_string.empty() ? "" : " in " + cwd_string));
  }

  output_fd_ = output[0];
  // Via syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C". -1 on kernels
  // before 5.3; waitExit() then falls back to polling waitpid().
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) throwErrno("eventfd");
  log_file_ = log_dir / (binary.filename().string() + "-" + std::to_string(pid_) + ".log");
  reader_ = std::thread([this] { readOutput(); });
}

AgentProcess::~AgentProcess() {
  if (!exit_status_) {
    ::kill(pid_, SIGKILL);
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  reader_.join();
  for (int fd : {output_fd_, wake_fd_, pidfd_}) {
    if (fd >= 0) ::close(fd);
  }
}

void AgentProcess::readOutput() {
  std::ofstream log(log_file_, std::ios::app);
  // Reads what is available now; true at EOF.
  auto drain = [&] {
    char chunk[8192];
    for (;;) {
      const auto n = ::read(output_fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return false;  // EAGAIN: nothing more for now
      if (n == 0) return true;
      appendOutput(std::string_view(chunk, static_cast<std::size_t>(n)));
      if (log) log.write(chunk, n).flush();
    }
  };
  ::fcntl(output_fd_, F_SETFL, ::fcntl(output_fd_, F_GETFL) | O_NONBLOCK);
  for (;;) {
    // poll() skips a negative fd, so without a pidfd only EOF or wake_fd_ end this.
    pollfd fds[3] = {{output_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}, {pidfd_, POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents != 0 && drain()) break;
    if (fds[1].revents != 0 || fds[2].revents != 0) {
      // The child has exited (or we are being destroyed), so everything it
      // wrote is in the pipe already. Its own children may hold the pipe open
      // forever, so do not wait for EOF.
      drain();
      break;
    }
  }
  std::lock_guard lock(mutex_);
  if (!partial_line_.empty()) lines_.push_back(std::exchange(partial_line_, {}));
  output_done_ = true;
  changed_.notify_all();
}

void AgentProcess::appendOutput(std::string_view bytes) {
  std::lock_guard lock(mutex_);
  for (char c : bytes) {
    if (c == '\n') {
      lines_.push_back(std::exchange(partial_line_, {}));
    } else {
      partial_line_ += c;
    }
  }
  changed_.notify_all();
}

bool AgentProcess::waitForLine(std::string_view substring, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  std::size_t checked = 0;
  bool found = false;
  changed_.wait_for(lock, timeout, [&] {
    for (; checked < lines_.size() && !found; ++checked) found = lines_[checked].find(substring) != std::string::npos;
    return found || output_done_;
  });
  return found;
}

std::optional<std::string> AgentProcess::findLine(std::string_view substring) const {
  std::lock_guard lock(mutex_);
  for (const auto& line : lines_) {
    if (line.find(substring) != std::string::npos) return line;
  }
  return std::nullopt;
}

std::uint16_t AgentProcess::waitForListening(std::chrono::milliseconds timeout) {
  constexpr std::string_view kEvent = "http.listening";
  if (!waitForLine(kEvent, timeout)) {
    throw std::runtime_error("no `http.listening` line from pid " + std::to_string(pid_) + " within " +
                             std::to_string(timeout.count()) + " ms; output:\n" + output());
  }
  const auto line = *findLine(kEvent);
  const auto addr = line.find("addr=");
  const auto end = line.find_first_of(" \t", addr);
  const auto hostport = addr == std::string::npos ? "" : line.substr(addr + 5, end - addr - 5);
  const auto colon = hostport.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("cannot parse addr=HOST:PORT in: " + line);
  const int port = std::stoi(hostport.substr(colon + 1));
  if (port <= 0 || port > 65535) throw std::runtime_error("bad port in: " + line);
  return static_cast<std::uint16_t>(port);
}

std::vector<std::string> AgentProcess::lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

std::string AgentProcess::output() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& line : lines_) out += line + "\n";
  return out + partial_line_;
}

void AgentProcess::kill(int sig) {
  // Not reaped yet, so the pid cannot have been reused.
  if (!exit_status_) ::kill(pid_, sig);
}

std::optional<int> AgentProcess::waitExit(std::chrono::milliseconds timeout) {
  if (exit_status_) return exit_status_;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = decodeWaitStatus(status);
      return exit_status_;
    }
    if (r < 0 && errno != EINTR) throwErrno("waitpid " + std::to_string(pid_));
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    // The pidfd becomes readable at exit; without one, re-check every 10 ms.
    pollfd pfd{pidfd_, POLLIN, 0};
    ::poll(pidfd_ >= 0 ? &pfd : nullptr, pidfd_ >= 0 ? 1 : 0,
           pidfd_ >= 0 ? static_cast<int>(left.count()) : std::min(10, static_cast<int>(left.count())));
  }
}

int AgentProcess::stop(int sig, std::chrono::milliseconds timeout) {
  if (exit_status_) return *exit_status_;
  kill(sig);
  if (auto status = waitExit(timeout)) return *status;
  ADD_FAILURE() << "pid " << pid_ << " did not exit within " << timeout.count() << " ms of signal " << sig
                << "; sending SIGKILL. Output:\n"
                << output();
  kill(SIGKILL);
  return waitExit(std::chrono::seconds(10)).value_or(-1);
}

}  // namespace phonefarm::testing
