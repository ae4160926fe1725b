// Thread names: setCurrentThreadName (pthread_setname_np) so that `top -H`,
// gdb and GET /debug tell the agent's threads apart, and listThreads for
// GET /debug. Names are "pf-<role>", at most 15 characters (the kernel's
// limit); a longer one is cut. A new thread starts with its creator's name,
// so every thread the agent starts names itself first thing.
#pragma once

#include <pthread.h>

#include <string>
#include <string_view>
#include <vector>

namespace phonefarm::os {

inline void setCurrentThreadName(std::string_view name) {
  const std::string cut(name.substr(0, 15));
  ::pthread_setname_np(::pthread_self(), cut.c_str());
}

// The calling thread's name ("" if it cannot be read).
std::string currentThreadName();

struct ThreadInfo {
  long tid = 0;
  std::string name;
};

// This process's threads, by tid, from /proc/self/task/<tid>/comm. A thread
// that exits while they are read is left out.
std::vector<ThreadInfo> listThreads();

}  // namespace phonefarm::os
