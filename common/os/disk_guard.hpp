// DiskGuard: watches the free space of the file system that holds state_dir
// (the store, the execution directories and the jobs' working directories)
// and keeps a reserve for the store there.
//
// - Below `min_free_bytes` free, refusal() says why, and new submissions are
//   refused with that detail (503); cancels, resets and reads go on.
// - The reserve is a preallocated ballast file (`disk-reserve` in the
//   directory, `reserve_bytes` long). When a job has filled the disk to the
//   last byte and a store commit fails for lack of space, the store releases
//   it (releaseReserve()) and commits again, so cancels and resets still
//   find room. Released only then, not when free space merely runs low: a
//   job still writing would take the reserve itself. It is allocated again
//   once `min_free_bytes + reserve_bytes` are free; until then its size
//   counts as used, so submissions stay refused while the reserve is spent.
//
// Thread-safe. refusal() and state() only statvfs; check() may allocate the
// ballast (blocking file-system work): call it off the event loop.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "common/result.hpp"

namespace phonefarm::os {

struct DiskGuardOptions {
  std::filesystem::path dir;         // state_dir
  std::uint64_t min_free_bytes = 0;  // [storage] min_free_bytes
  std::uint64_t reserve_bytes = 0;   // [storage] reserve_bytes; 0 = no ballast
};

struct DiskState {
  std::uint64_t free_bytes = 0;    // available to the agent (statvfs f_bavail)
  std::uint64_t total_bytes = 0;   // size of the file system
  bool low = false;                // submissions are refused
  std::uint64_t reserve_held = 0;  // bytes of the ballast allocated now
  bool reserve_released = false;   // the ballast was given up and is not back yet
  std::uint64_t reserve_releases = 0;
  std::uint64_t refused_submissions = 0;
  std::optional<std::string> error;  // statvfs failed: the state is unknown (not low)
};

class DiskGuard {
 public:
  static constexpr const char* kBallastName = "disk-reserve";

  explicit DiskGuard(DiskGuardOptions options);
  DiskGuard(const DiskGuard&) = delete;
  DiskGuard& operator=(const DiskGuard&) = delete;

  // Measures, and allocates the ballast when it is missing and there is
  // room. Blocking: not on the event loop.
  DiskState check();
  // Gives the ballast's space back to the file system; true when it freed
  // something. Called by the store when a commit fails with SQLITE_FULL.
  bool releaseReserve();
  // Why a new submission must be refused now (a fresh statvfs), or nullopt.
  std::optional<std::string> lowReason();
  // lowReason(), counted as a refused submission when set.
  std::optional<std::string> refusal();
  // The last measurement (statvfs now, without touching the ballast).
  DiskState state();

  const DiskGuardOptions& options() const { return options_; }

 private:
  DiskState measureLocked();
  std::optional<std::string> lowReasonLocked();
  void allocateLocked(std::uint64_t free_bytes);
  bool releaseLocked(const char* why);

  const DiskGuardOptions options_;
  std::mutex mutex_;
  std::uint64_t reserve_held_ = 0;
  bool reserve_released_ = false;
  std::uint64_t releases_ = 0;
  std::uint64_t refused_ = 0;
};

}  // namespace phonefarm::os
