// AgentProcess: runs the real phonefarm-agent binary (or any binary) as a
// child of an integration test. Its stdout and stderr are captured line by
// line (kept in memory for assertions and appended to a log file for
// debugging), so a test can wait for the events the daemon logs, e.g.
// `http.listening addr=127.0.0.1:PORT`, instead of sleeping.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/temp_dir.hpp"  // integration tests use both together

namespace phonefarm::testing {

class AgentProcess {
 public:
  using Env = std::vector<std::pair<std::string, std::string>>;

  // Starts `binary args...` with the test's environment plus `extra_env`, in
  // `cwd` (empty: the test's own working directory, which may be in a build
  // tree other users cannot enter). Output goes to
  // <log_dir>/<binary name>-<pid>.log as well. The child gets SIGKILL if the
  // thread that started it exits (PR_SET_PDEATHSIG), so a crashed test does
  // not leave daemons behind; start it from the test's main thread. Throws
  // std::system_error if it cannot be started (or cannot enter `cwd`).
  // `listen_fd` >= 0 is passed as systemd does (socket activation): as fd 3,
  // with LISTEN_FDS=1 and LISTEN_PID set to the child's pid.
  AgentProcess(const std::filesystem::path& binary, const std::vector<std::string>& args,
               const std::filesystem::path& log_dir, const Env& extra_env = {}, const std::filesystem::path& cwd = {},
               int listen_fd = -1);
  // SIGKILLs the child if still running and reaps it.
  ~AgentProcess();
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::filesystem::path& logFile() const { return log_file_; }

  // Waits for `http.listening addr=HOST:PORT` and returns PORT. Throws
  // std::runtime_error (with the output so far) on timeout or early exit.
  std::uint16_t waitForListening(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // True once any output line (from the start) contains `substring`; false at
  // the timeout or when the child has exited without printing it.
  bool waitForLine(std::string_view substring, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The first line containing `substring`, if any (does not wait).
  std::optional<std::string> findLine(std::string_view substring) const;
  std::vector<std::string> lines() const;
  std::string output() const;  // all lines, newline-joined, for failure messages

  void kill(int sig);
  // Exit status if the child exits within `timeout`: the exit code, or
  // 128 + signal number if a signal killed it (as a shell reports it).
  std::optional<int> waitExit(std::chrono::milliseconds timeout);
  // Sends `sig` and waits for the exit; after the timeout it records a test
  // failure, SIGKILLs and returns that status instead.
  int stop(int sig = SIGTERM, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  bool running() { return !waitExit(std::chrono::milliseconds(0)).has_value(); }

 private:
  void readOutput();
  void appendOutput(std::string_view bytes);

  pid_t pid_ = -1;
  int pidfd_ = -1;      // exit notification without polling waitpid()
  int output_fd_ = -1;  // read end of the child's stdout+stderr
  int wake_fd_ = -1;    // eventfd: tells the reader to finish
  std::optional<int> exit_status_;
  std::filesystem::path log_file_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
  std::string partial_line_;
  bool output_done_ = false;  // the child exited (or the pipe hit EOF): no more lines
  std::thread reader_;
};

}  // namespace phonefarm::testing
