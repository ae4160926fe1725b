// Implementation of work_limits.hpp.
#include "agent/exec/work_limits.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <sstream>
#include <system_error>

#include "agent/exec/cgroup_tree.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::exec {
namespace fs = std::filesystem;
namespace {

bool listed(std::string_view comma_list, std::string_view word) {
  while (!comma_list.empty()) {
    const auto comma = comma_list.find(',');
    if (comma_list.substr(0, comma) == word) return true;
    if (comma == std::string_view::npos) break;
    comma_list.remove_prefix(comma + 1);
  }
  return false;
}

struct LimitSpec {
  const char* limit;
  const char* controller;
  const char* v2_file;
  const char* v1_file;
};
constexpr LimitSpec kPids{"pids_max", "pids", "pids.max", "pids.max"};
constexpr LimitSpec kMemory{"memory_max", "memory", "memory.max", "memory.limit_in_bytes"};
constexpr LimitSpec kCpu{"cpu_weight", "cpu", "cpu.weight", "cpu.shares"};

}  // namespace

std::optional<std::string> limitNote(const LimitHits& hits, const WorkLimits& limits) {
  std::string note;
  if (hits.oom_kills > 0) {
    note = "stopped by the memory limit: OOM kill (" + std::to_string(hits.oom_kills) +
           " process(es) killed at memory_max " + std::to_string(limits.memory_max.value_or(0)) + " bytes)";
  }
  if (hits.pids_refused > 0) {
    if (!note.empty()) note += "; ";
    note += "stopped by the pids limit: pids_max " + std::to_string(limits.pids_max.value_or(0)) + " reached (" +
            std::to_string(hits.pids_refused) + " fork(s) refused)";
  }
  if (note.empty()) return std::nullopt;
  return note;
}

std::uint64_t keyedCounter(std::string_view text, std::string_view key) {
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string name;
    std::uint64_t value = 0;
    if (fields >> name >> value && name == key) return value;
  }
  return 0;
}

std::optional<fs::path> v1CgroupDir(std::string_view proc_cgroup, std::string_view mountinfo,
                                    std::string_view controller) {
  // "<id>:<controllers>:<path>"; the path may itself hold colons.
  std::optional<std::string> own;
  std::istringstream lines{std::string(proc_cgroup)};
  for (std::string line; std::getline(lines, line);) {
    const auto first = line.find(':');
    const auto second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    if (listed(std::string_view(line).substr(first + 1, second - first - 1), controller)) own = line.substr(second + 1);
  }
  if (!own || own->empty() || (*own)[0] != '/') return std::nullopt;
  std::istringstream mounts{std::string(mountinfo)};
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string field; fields >> field;) f.push_back(field);
    const auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 4 || *(dash + 1) != "cgroup") continue;
    if (!listed(*(dash + 3), controller)) continue;
    const std::string root = unescapeMountField(f[3]);
    std::string rest;
    if (root == "/") {
      rest = *own;
    } else if (*own == root || own->rfind(root + "/", 0) == 0) {
      rest = own->substr(root.size());
    } else {
      continue;
    }
    rest.erase(0, rest.find_first_not_of('/'));
    return (fs::path(unescapeMountField(f[4])) / rest).lexically_normal();
  }
  return std::nullopt;
}

LimitHits v2CgroupHits(const fs::path& dir) {
  LimitHits hits;
  if (auto text = readCgroupFile(dir / "pids.events")) hits.pids_refused = keyedCounter(*text, "max");
  if (auto text = readCgroupFile(dir / "memory.events")) hits.oom_kills = keyedCounter(*text, "oom_kill");
  return hits;
}

LimitHits unitCgroupHits(const WorkLimits& limits, const fs::path& unit_v2_dir, std::string_view proc_cgroup,
                         std::string_view mountinfo) {
  // Per counted limit: its controller, the counter file in v2 and in v1, the
  // counter's key, and where it goes.
  struct Counter {
    bool set;
    const char* controller;
    const char* v2_file;
    const char* v1_file;
    const char* key;
    std::uint64_t LimitHits::*field;
  };
  const Counter counters[] = {
      {limits.pids_max.has_value(), kPids.controller, "pids.events", "pids.events", "max", &LimitHits::pids_refused},
      {limits.memory_max.has_value(), kMemory.controller, "memory.events", "memory.oom_control", "oom_kill",
       &LimitHits::oom_kills},
  };
  LimitHits hits;
  for (const Counter& c : counters) {
    if (!c.set) continue;
    // v2: the file is there only where the controller is enabled.
    const fs::path v2_file = unit_v2_dir / c.v2_file;
    std::error_code ec;
    std::optional<fs::path> file;
    if (!unit_v2_dir.empty() && fs::exists(v2_file, ec)) {
      file = v2_file;
    } else if (auto v1 = v1CgroupDir(proc_cgroup, mountinfo, c.controller)) {
      file = *v1 / c.v1_file;
    }
    if (!file) continue;
    if (auto text = readCgroupFile(*file)) hits.*c.field += keyedCounter(*text, c.key);
  }
  return hits;
}

std::uint64_t cpuSharesForWeight(std::int64_t weight) {
  return std::max<std::uint64_t>(2, static_cast<std::uint64_t>(weight) * 1024 / 100);
}

WorkLimiter WorkLimiter::open(const WorkLimits& limits, const std::set<std::string>& v2_leaf_controllers) {
  WorkLimiter limiter;
  limiter.limits_ = limits;
  std::optional<std::string> proc_cgroup;
  std::optional<std::string> mountinfo;
  auto place = [&](const LimitSpec& spec, const std::string& v2_value, const std::string& v1_value) {
    if (v2_leaf_controllers.count(spec.controller) > 0) {
      limiter.placements_.push_back({spec.limit, spec.v2_file, v2_value, std::nullopt});
      return;
    }
    if (!proc_cgroup) {
      auto c = readCgroupFile("/proc/self/cgroup");
      auto m = readCgroupFile("/proc/self/mountinfo");
      proc_cgroup = c ? *c : "";
      mountinfo = m ? *m : "";
    }
    const std::string no_v2 =
        std::string("the cgroup v2 work subtree has no '") + spec.controller + "' controller for its leaves";
    auto own = v1CgroupDir(*proc_cgroup, *mountinfo, spec.controller);
    if (!own) {
      limiter.unavailable_[spec.limit] = no_v2 + ", and no cgroup v1 hierarchy carries it";
      return;
    }
    const auto dir = *own / CgroupTree::kManagedDirName;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      limiter.unavailable_[spec.limit] = no_v2 + ", and " + os::sysError("mkdir " + dir.string(), errno).message;
      return;
    }
    // The directory may be there from an agent of another user: only a
    // child we can create (and remove) proves we can make executions' ones.
    const auto probe = dir / ("phonefarm-probe-" + std::to_string(::getpid()));
    if (::mkdir(probe.c_str(), 0755) != 0 && errno != EEXIST) {
      limiter.unavailable_[spec.limit] = no_v2 + ", and " + os::sysError("mkdir " + probe.string(), errno).message;
      return;
    }
    ::rmdir(probe.c_str());
    limiter.placements_.push_back({spec.limit, spec.v1_file, v1_value, dir});
  };
  if (limits.pids_max) place(kPids, std::to_string(*limits.pids_max), std::to_string(*limits.pids_max));
  if (limits.memory_max) place(kMemory, std::to_string(*limits.memory_max), std::to_string(*limits.memory_max));
  if (limits.cpu_weight) {
    place(kCpu, std::to_string(*limits.cpu_weight), std::to_string(cpuSharesForWeight(*limits.cpu_weight)));
  }
  return limiter;
}

Result<std::vector<fs::path>> WorkLimiter::prepare(const std::string& execution_id,
                                                   const std::optional<fs::path>& v2_leaf) const {
  std::vector<fs::path> joins;
  for (const auto& p : placements_) {
    if (!p.v1_dir) {
      if (!v2_leaf) continue;  // no leaf (process-group runtime): open() had no v2 controllers then
      if (auto written = writeCgroupFile(*v2_leaf / p.file, p.value); !written) {
        (void)release(execution_id);
        return written.error();
      }
      continue;
    }
    // The id is a validated cgroup leaf name (CgroupTree::createLeaf checks
    // it first); checked again so no path can leave phonefarm-work.
    if (execution_id.empty() || execution_id.find('/') != std::string::npos || execution_id[0] == '.') {
      return makeError(ErrorKind::kInvalid, "invalid execution id for a cgroup: '" + execution_id + "'");
    }
    const auto dir = *p.v1_dir / execution_id;
    if (std::find(joins.begin(), joins.end(), dir) == joins.end()) {
      if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        auto error = os::sysError("mkdir " + dir.string(), errno);
        (void)release(execution_id);
        return error;
      }
      joins.push_back(dir);
    }
    if (auto written = writeCgroupFile(dir / p.file, p.value); !written) {
      (void)release(execution_id);
      return written.error();
    }
  }
  return joins;
}

LimitHits WorkLimiter::hits(const std::string& execution_id, const std::optional<fs::path>& v2_leaf) const {
  LimitHits hits;
  for (const auto& p : placements_) {
    std::optional<fs::path> dir = p.v1_dir ? std::optional<fs::path>(*p.v1_dir / execution_id) : v2_leaf;
    if (!dir || execution_id.empty()) continue;
    if (p.limit == kPids.limit) {
      if (auto text = readCgroupFile(*dir / "pids.events")) hits.pids_refused += keyedCounter(*text, "max");
    } else if (p.limit == kMemory.limit) {
      const char* file = p.v1_dir ? "memory.oom_control" : "memory.events";
      if (auto text = readCgroupFile(*dir / file)) hits.oom_kills += keyedCounter(*text, "oom_kill");
    }
  }
  return hits;
}

Status WorkLimiter::release(const std::string& execution_id) const {
  if (execution_id.empty() || execution_id.find('/') != std::string::npos || execution_id[0] == '.') {
    return okStatus();  // prepare() never made one
  }
  Status result = okStatus();
  std::set<fs::path> done;
  for (const auto& p : placements_) {
    if (!p.v1_dir || !done.insert(*p.v1_dir).second) continue;
    const auto dir = *p.v1_dir / execution_id;
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT && result) result = os::sysError("rmdir " + dir.string(), errno);
  }
  return result;
}

boost::json::object WorkLimiter::describe() const {
  boost::json::object out;
  auto value = [this](const std::string& limit) -> boost::json::value {
    if (limit == kPids.limit) return *limits_.pids_max;
    if (limit == kMemory.limit) return *limits_.memory_max;
    return *limits_.cpu_weight;
  };
  for (const auto& p : placements_) {
    out[p.limit] =
        boost::json::object{{"value", value(p.limit)},
                            {"cgroup", p.v1_dir ? "v1" : "v2"},
                            {"file", p.file},
                            {"dir", p.v1_dir ? boost::json::value(p.v1_dir->string()) : boost::json::value(nullptr)}};
  }
  for (const auto& [limit, why] : unavailable_) {
    out[limit] = boost::json::object{{"value", value(limit)}, {"unavailable", why}};
  }
  return out;
}

}  // namespace phonefarm::exec
