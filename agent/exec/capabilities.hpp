// Linux capabilities of the calling process, without libcap: the raw
// capget/capset syscalls (_LINUX_CAPABILITY_VERSION_3) and /proc/self/status.
//
// Under systemd the agent is the unprivileged `phonefarm` user holding a few
// ambient capabilities (systemd/phonefarm-agent.service). The exec shim
// inherits them; as setuid() between two non-zero uids keeps every
// capability, the shim clears them itself before it starts the work
// (dropAllCapabilities) and proves it (checkNoCapabilities). The executor
// asks hasEffectiveCapability whether the agent can run work at all.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace phonefarm::exec {

// The sets as /proc/self/status shows them (bit N = capability N).
struct CapabilitySets {
  std::uint64_t inheritable = 0;
  std::uint64_t permitted = 0;
  std::uint64_t effective = 0;
  std::uint64_t ambient = 0;
};

// The calling thread's sets, from /proc/self/status (CapInh, CapPrm, CapEff,
// CapAmb; a kernel without CapAmb reports 0 for it).
Result<CapabilitySets> readCapabilitySets();

// Whether `capability` (CAP_KILL, ...) is in the effective set (capget).
bool hasEffectiveCapability(int capability);

// Empties the ambient set (PR_CAP_AMBIENT_CLEAR_ALL), then the inheritable,
// permitted and effective sets (capset). Dropping needs no privilege; an
// error means the kernel (or a seccomp filter) refused.
Status dropAllCapabilities();

// Fails unless CapInh, CapPrm, CapEff and CapAmb are all zero, naming the
// sets that are not.
Status checkNoCapabilities();

// "CAP_SETUID" for CAP_SETUID, "cap_<n>" for numbers it does not know.
std::string capabilityName(int capability);

}  // namespace phonefarm::exec
