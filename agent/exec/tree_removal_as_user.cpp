// remove-tree as the work user; see tree_removal_as_user.hpp.
#include "agent/exec/tree_removal_as_user.hpp"

#include <grp.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>

#include "agent/exec/capabilities.hpp"
#include "common/os/sys_error.hpp"
#include "common/os/user_lookup.hpp"

extern char** environ;

namespace phonefarm::exec {

int runRemoveTreeSubcommand(const std::vector<std::string>& args) {
  if (args.size() != 3 || args[0] != "--run-as" || args[1].empty() || args[2].empty() || args[2][0] != '/') {
    std::cerr << "usage: phonefarm-agent remove-tree --run-as USER /ABSOLUTE/DIR\n";
    return 2;
  }
  auto user = os::lookupUser(args[1]);
  if (!user || !*user || (*user)->uid == 0) {
    std::cerr << "phonefarm-agent remove-tree: no such unprivileged user: " << args[1] << "\n";
    return 3;
  }
  const gid_t gid = (*user)->gid;
  const uid_t uid = (*user)->uid;
  if (::setgroups(1, &gid) != 0 || ::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0) {
    std::cerr << "phonefarm-agent remove-tree: cannot become " << args[1] << ": " << os::errnoText() << "\n";
    return 3;
  }
  if (auto dropped = dropAllCapabilities(); !dropped) {
    std::cerr << "phonefarm-agent remove-tree: " << dropped.error().message << "\n";
    return 3;
  }
  // The directory itself is in the agent's executions/, where only the agent
  // may unlink; it empties it, the agent removes it.
  auto removed = os::removeTreeContents(args[2]);
  if (!removed) {
    std::cerr << "phonefarm-agent remove-tree: " << removed.error().message << "\n";
    return 1;
  }
  return 0;
}

Result<os::RemovedTree> removeTreeAsUser(const std::filesystem::path& agent_binary, const std::string& run_as,
                                         const std::filesystem::path& dir) {
  std::vector<std::string> args{agent_binary.string(), kRemoveTreeSubcommand, "--run-as", run_as, dir.string()};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (const int rc = ::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ); rc != 0) {
    return os::sysError(ErrorKind::kInternal, "spawn " + agent_binary.string() + " remove-tree", rc);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // Whatever reaped the child (the process-group runtime's reaper may), the
  // verdict is what is left: the agent removes the emptied directory.
  auto rest = os::removeTree(dir);
  if (!rest) {
    return makeError(rest.error().kind, rest.error().message + " (after remove-tree as " + run_as + ", exit status " +
                                            std::to_string(status) + ")");
  }
  return rest;
}

}  // namespace phonefarm::exec
