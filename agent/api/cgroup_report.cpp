// The work cgroup tree for GET /debug; see cgroup_report.hpp. The cgroupfs
// files are read by agent/exec/cgroup_tree's parsers.
#include "agent/api/cgroup_report.hpp"

#include <algorithm>
#include <boost/json/array.hpp>
#include <string>
#include <vector>

#include "agent/exec/cgroup_tree.hpp"

namespace phonefarm::api {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

// {"populated": 1, "frozen": 0}; {} when the file cannot be read.
json::object eventsJson(const fs::path& leaf) {
  json::object o;
  auto events = exec::readCgroupEvents(leaf);
  if (!events) return o;
  o["populated"] = events->populated ? 1 : 0;
  if (events->frozen) o["frozen"] = *events->frozen ? 1 : 0;
  return o;
}

}  // namespace

json::object describeCgroupTree(const fs::path& managed_dir, std::size_t max_leaves, std::size_t max_pids) {
  json::object o{{"dir", managed_dir.string()}};
  std::error_code ec;
  std::vector<fs::path> leaves;
  for (const auto& entry : fs::directory_iterator(managed_dir, ec)) {
    if (entry.is_directory(ec) && !entry.is_symlink(ec)) leaves.push_back(entry.path());
  }
  if (ec) {
    o["error"] = ec.message();
    return o;
  }
  std::sort(leaves.begin(), leaves.end());
  o["leaf_count"] = leaves.size();
  json::array list;
  for (std::size_t i = 0; i < leaves.size() && i < max_leaves; ++i) {
    const fs::path& leaf = leaves[i];
    const auto listed = exec::readCgroupProcs(leaf);
    const std::vector<pid_t> none;
    const std::vector<pid_t>& all = listed ? *listed : none;
    json::array pids;
    for (std::size_t p = 0; p < all.size() && p < max_pids; ++p) pids.push_back(all[p]);
    json::object l{{"name", leaf.filename().string()},
                   {"pids", std::move(pids)},
                   {"pid_count", all.size()},
                   {"events", eventsJson(leaf)}};
    list.push_back(std::move(l));
  }
  o["leaves"] = std::move(list);
  if (leaves.size() > max_leaves) o["leaves_not_listed"] = leaves.size() - max_leaves;
  return o;
}

}  // namespace phonefarm::api
