// Reading thread names back; see thread_name.hpp.
#include "common/os/thread_name.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <system_error>

namespace phonefarm::os {

std::string currentThreadName() {
  char name[16] = {};
  if (::pthread_getname_np(::pthread_self(), name, sizeof name) != 0) return {};
  return name;
}

std::vector<ThreadInfo> listThreads() {
  std::vector<ThreadInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    const std::string tid_text = entry.path().filename().string();
    long tid = 0;
    const auto [end, parse] = std::from_chars(tid_text.data(), tid_text.data() + tid_text.size(), tid);
    if (parse != std::errc() || end != tid_text.data() + tid_text.size()) continue;
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    if (!std::getline(comm, name)) continue;  // exited meanwhile
    out.push_back(ThreadInfo{tid, std::move(name)});
  }
  std::sort(out.begin(), out.end(), [](const ThreadInfo& a, const ThreadInfo& b) { return a.tid < b.tid; });
  return out;
}

}  // namespace phonefarm::os
