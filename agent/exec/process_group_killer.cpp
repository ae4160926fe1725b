// Implementation of process_group_killer.hpp: a /proc/*/stat table of the
// agent's descendants, the stop-map-kill sweep and the subreaper's reaping.
#include "agent/exec/process_group_killer.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>

#include "agent/exec/process_spawner.hpp"

namespace phonefarm::exec {
namespace {

// Bounds on the /proc scans: stopping a tree usually settles in 2-3 rounds.
constexpr int kMaxStopRounds = 30;
constexpr int kMaxKillRounds = 3;

struct ProcStat {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  char state = '?';
  unsigned long long start_time = 0;  // clock ticks since boot: pid + start time names one process
};

bool isDead(const ProcStat& p) { return p.state == 'Z' || p.state == 'X' || p.state == 'x'; }
bool isStopped(const ProcStat& p) { return p.state == 'T' || p.state == 't' || isDead(p); }

std::optional<ProcStat> readStat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return std::nullopt;
  // comm may hold spaces and parentheses: the fields start after the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 1));
  ProcStat p;
  p.pid = pid;
  std::string skip;
  fields >> p.state >> p.ppid >> p.pgid >> p.sid;
  for (int i = 0; i < 15; ++i) fields >> skip;  // tty_nr .. itrealvalue
  fields >> p.start_time;
  if (!fields) return std::nullopt;
  return p;
}

std::vector<ProcStat> scanProc() {
  std::vector<ProcStat> table;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    if (auto p = readStat(static_cast<pid_t>(std::stol(name)))) table.push_back(*p);
  }
  return table;
}

bool environHas(pid_t pid, std::string_view marker) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  for (std::string entry; std::getline(in, entry, '\0');) {
    if (entry == marker) return true;
  }
  return false;
}

// The processes of the execution, among our descendants, that are alive.
// Group and session membership count only when the group id is trusted (its
// leader verified): otherwise the id may have been recycled by another
// execution's leader, and only the environment marker says what is ours.
std::vector<ProcStat> findTree(const std::vector<ProcStat>& table, pid_t pgid, std::string_view marker,
                               bool trust_group) {
  const pid_t self = ::getpid();
  std::unordered_map<pid_t, std::vector<const ProcStat*>> children;
  for (const auto& p : table) children[p.ppid].push_back(&p);

  std::vector<const ProcStat*> descendants;
  for (std::vector<pid_t> frontier{self}; !frontier.empty();) {
    const pid_t parent = frontier.back();
    frontier.pop_back();
    for (const auto* child : children[parent]) {
      descendants.push_back(child);
      frontier.push_back(child->pid);
    }
  }
  std::unordered_set<pid_t> in_tree;
  std::vector<pid_t> frontier;
  for (const auto* p : descendants) {
    const bool by_group = trust_group && (p->pgid == pgid || p->sid == pgid);
    const bool claimed =
        by_group || (!marker.empty() && !isDead(*p) && (p->ppid == self || !trust_group) && environHas(p->pid, marker));
    if (claimed && in_tree.insert(p->pid).second) frontier.push_back(p->pid);
  }
  while (!frontier.empty()) {
    const pid_t parent = frontier.back();
    frontier.pop_back();
    for (const auto* child : children[parent]) {
      if (in_tree.insert(child->pid).second) frontier.push_back(child->pid);
    }
  }
  std::vector<ProcStat> tree;
  for (const auto* p : descendants) {
    if (in_tree.count(p->pid) != 0 && !isDead(*p)) tree.push_back(*p);
  }
  return tree;
}

// A pidfd for exactly the process in `p`: after pidfd_open the start time is
// re-read, so a pid recycled since the scan is refused.
std::optional<int> pinProcess(const ProcStat& p) {
  auto pidfd = openPidfd(p.pid);
  if (!pidfd) return std::nullopt;
  const auto now = readStat(p.pid);
  if (!now || now->start_time != p.start_time) {
    ::close(*pidfd);
    return std::nullopt;
  }
  return *pidfd;
}

}  // namespace

Status becomeChildSubreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL) != 0) {
    return makeError(ErrorKind::kInternal, "prctl(PR_SET_CHILD_SUBREAPER): " + std::system_category().message(errno));
  }
  return okStatus();
}

std::optional<long long> processStartTime(pid_t pid) {
  auto stat = readStat(pid);
  if (!stat) return std::nullopt;
  return static_cast<long long>(stat->start_time);
}

Result<GroupKillReport> killProcessGroupTree(pid_t pgid, std::string_view environ_marker, bool signal_group) {
  if (pgid <= 1 || pgid == ::getpgrp()) {
    return makeError(ErrorKind::kInvalid, "refusing to kill process group " + std::to_string(pgid));
  }
  GroupKillReport report;
  // One atomic stop of the whole group, so its members cannot fork while the
  // tree is being mapped.
  if (!signal_group) {
    // Nothing to stop by group id.
  } else if (::killpg(pgid, SIGSTOP) == 0) {
    report.group_signalled = true;
  } else if (errno != ESRCH) {
    return makeError(ErrorKind::kUnavailable,
                     "killpg(" + std::to_string(pgid) + ", SIGSTOP): " + std::system_category().message(errno));
  }

  // Stop every found process, re-map, repeat until a scan finds nothing new
  // and everything found has stopped. From here on there is no early return:
  // whatever was stopped must get its SIGKILL.
  std::unordered_map<pid_t, int> pinned;
  for (int round = 0; round < kMaxStopRounds; ++round) {
    ++report.rounds;
    bool settled = true;
    for (const auto& p : findTree(scanProc(), pgid, environ_marker, signal_group)) {
      if (pinned.count(p.pid) != 0) {
        settled = settled && isStopped(p);
        continue;
      }
      const auto pidfd = pinProcess(p);
      if (!pidfd) continue;
      (void)signalPidfd(*pidfd, SIGSTOP);
      pinned.emplace(p.pid, *pidfd);
      settled = false;
    }
    if (settled) break;
  }

  if (signal_group && ::killpg(pgid, SIGKILL) == 0) report.group_signalled = true;
  for (const auto& [pid, pidfd] : pinned) {
    if (signalPidfd(pidfd, SIGKILL)) report.killed.push_back(pid);
  }
  // Anything the stop rounds did not pin (a fork from a task that had not
  // stopped yet): a few more kill-only rounds.
  for (int round = 0; round < kMaxKillRounds; ++round) {
    ++report.rounds;
    bool found_new = false;
    for (const auto& p : findTree(scanProc(), pgid, environ_marker, signal_group)) {
      if (pinned.count(p.pid) != 0) continue;
      const auto pidfd = pinProcess(p);
      if (!pidfd) continue;
      if (signalPidfd(*pidfd, SIGKILL)) report.killed.push_back(p.pid);
      pinned.emplace(p.pid, *pidfd);
      found_new = true;
    }
    if (!found_new) break;
  }
  for (const auto& [pid, pidfd] : pinned) ::close(pidfd);
  std::sort(report.killed.begin(), report.killed.end());
  return report;
}

int reapAdoptedZombies(std::span<const pid_t> keep) {
  const pid_t self = ::getpid();
  int reaped = 0;
  for (const auto& p : scanProc()) {
    if (p.ppid != self || p.state != 'Z' || std::find(keep.begin(), keep.end(), p.pid) != keep.end()) continue;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(p.pid), &info, WEXITED | WNOHANG) == 0 && info.si_pid != 0) ++reaped;
  }
  return reaped;
}

}  // namespace phonefarm::exec
