// describeCgroupTree: the work cgroups as GET /debug shows them — the
// managed directory (<cgroup_root>/phonefarm-work) and each execution leaf
// in it with its pids (cgroup.procs) and its cgroup.events, read from
// cgroupfs at the time of the request. Bounded: at most `max_leaves` leaves
// and `max_pids` pids per leaf are listed, the rest is counted.
#pragma once

#include <boost/json/object.hpp>
#include <cstddef>
#include <filesystem>

namespace phonefarm::api {

boost::json::object describeCgroupTree(const std::filesystem::path& managed_dir, std::size_t max_leaves = 256,
                                       std::size_t max_pids = 256);

}  // namespace phonefarm::api
