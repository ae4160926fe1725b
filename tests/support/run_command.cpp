#include "tests/support/run_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

extern char** environ;

namespace phonefarm::testing {
namespace {

struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() {
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  ~Pipe() {
    closeEnd(0);
    closeEnd(1);
  }
  void closeEnd(int i) {
    if (fds[i] >= 0) ::close(fds[i]);
    fds[i] = -1;
  }
};

}  // namespace

CommandResult runCommand(const std::vector<std::string>& argv, const CommandOptions& options) {
  const std::string_view stdin_data = options.stdin_data;
  CommandResult result;
  if (argv.empty()) return result;
  ::signal(SIGPIPE, SIG_IGN);  // a program that exits without reading its stdin
  Pipe in, out, err;
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, in.fds[0], 0);
  ::posix_spawn_file_actions_adddup2(&actions, out.fds[1], 1);
  ::posix_spawn_file_actions_adddup2(&actions, options.separate_stderr ? err.fds[1] : out.fds[1], 2);
  if (!options.cwd.empty()) ::posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    result.output = "cannot start " + argv[0] + ": " + std::generic_category().message(rc);
    return result;
  }
  in.closeEnd(0);
  out.closeEnd(1);
  err.closeEnd(1);
  if (!options.separate_stderr) err.closeEnd(0);
  ::fcntl(in.fds[1], F_SETFL, O_NONBLOCK);
  if (stdin_data.empty()) in.closeEnd(1);

  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  std::size_t written = 0;
  auto drain = [](Pipe& pipe, std::string& into) {
    char buf[8192];
    const ssize_t r = ::read(pipe.fds[0], buf, sizeof buf);
    if (r > 0) {
      into.append(buf, static_cast<std::size_t>(r));
    } else if (r == 0 || errno != EINTR) {
      pipe.closeEnd(0);
    }
  };
  while (out.fds[0] >= 0 || err.fds[0] >= 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    // A closed end has fd -1, which poll() skips.
    pollfd fds[3] = {{out.fds[0], POLLIN, 0}, {err.fds[0], POLLIN, 0}, {in.fds[1], POLLOUT, 0}};
    if (::poll(fds, 3, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    if (in.fds[1] >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      const ssize_t w = ::write(in.fds[1], stdin_data.data() + written, stdin_data.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if (w < 0 && errno != EAGAIN) written = stdin_data.size();  // reader gone
      if (written == stdin_data.size()) in.closeEnd(1);
    }
    if (out.fds[0] >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) drain(out, result.output);
    if (err.fds[0] >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) drain(err, result.error);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace phonefarm::testing
