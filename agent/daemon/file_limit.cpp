// ensureFileLimit: see file_limit.hpp.
#include "agent/daemon/file_limit.hpp"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace phonefarm {

void ensureFileLimit(std::size_t max_connections) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const auto needed = static_cast<rlim_t>(max_connections + kFileLimitReserve);
  if (limit.rlim_cur >= needed) return;
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? needed : std::min(needed, limit.rlim_max);
  if (limit.rlim_cur > before && ::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("agent.fd_limit_low soft={} needed={} error=\"{}\"", before, needed, std::strerror(errno));
    return;
  }
  if (limit.rlim_cur < needed) {
    spdlog::warn("agent.fd_limit_low soft={} hard={} needed={} (http.max_connections + {}): raise LimitNOFILE=",
                 limit.rlim_cur, limit.rlim_max, needed, kFileLimitReserve);
    return;
  }
  spdlog::info("agent.fd_limit soft={} was={} needed={}", limit.rlim_cur, before, needed);
}

}  // namespace phonefarm
