// The work cgroup tree for GET /debug; see cgroup_report.hpp.
#include "agent/api/cgroup_report.hpp"

#include <algorithm>
#include <boost/json/array.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace phonefarm::api {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

// "populated 1\nfrozen 0\n" -> {"populated": 1, "frozen": 0}.
json::object readEvents(const fs::path& file) {
  json::object o;
  std::ifstream in(file);
  std::string key;
  long long value = 0;
  while (in >> key >> value) o[key] = value;
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
    json::array pids;
    std::size_t total = 0;
    std::ifstream procs(leaf / "cgroup.procs");
    long long pid = 0;
    while (procs >> pid) {
      if (total++ < max_pids) pids.push_back(pid);
    }
    json::object l{{"name", leaf.filename().string()},
                   {"pids", std::move(pids)},
                   {"pid_count", total},
                   {"events", readEvents(leaf / "cgroup.events")}};
    list.push_back(std::move(l));
  }
  o["leaves"] = std::move(list);
  if (leaves.size() > max_leaves) o["leaves_not_listed"] = leaves.size() - max_leaves;
  return o;
}

}  // namespace phonefarm::api
