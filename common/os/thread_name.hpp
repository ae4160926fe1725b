// Names the calling thread (pthread_setname_np) so that `top -H`, gdb and
// GET /debug tell the agent's threads apart. Names are "pf-<role>", at most
// 15 characters (the kernel's limit); a longer one is cut.
#pragma once

#include <pthread.h>

#include <string>
#include <string_view>

namespace phonefarm::os {

inline void setCurrentThreadName(std::string_view name) {
  const std::string cut(name.substr(0, 15));
  ::pthread_setname_np(::pthread_self(), cut.c_str());
}

}  // namespace phonefarm::os
