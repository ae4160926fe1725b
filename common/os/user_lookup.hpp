// The password and group databases, as the agent asks them about users
// (run_as, mostly): getpwnam_r with a buffer that grows as needed, and the
// user's groups. One place, so every caller sees the same answer.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::os {

struct UserEntry {
  uid_t uid = 0;
  gid_t gid = 0;     // primary group
  std::string home;  // "/" when the entry has none
};

// nullopt when there is no such user; an Error when the lookup itself failed.
Result<std::optional<UserEntry>> lookupUser(const std::string& name);

// Every group of `name` (getgrouplist), `primary` included.
std::vector<gid_t> groupsOf(const std::string& name, gid_t primary);

}  // namespace phonefarm::os
