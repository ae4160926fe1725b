// removeTree: deletes a directory tree that untrusted work wrote, without
// following anything the work planted. Every step is relative to a
// descriptor of the directory above it (openat/unlinkat with O_NOFOLLOW |
// O_DIRECTORY), so a symbolic link swapped in for a directory is unlinked as
// a link, never entered, and a directory renamed away mid-walk takes nothing
// outside the tree with it. Directories the work left unreadable (chmod 000)
// get their mode fixed first, through the descriptor, when the caller may
// change it (it owns the directory, or is root). Blocking file-system work:
// call it on a worker thread, never on the event loop.
#pragma once

#include <cstdint>
#include <filesystem>

#include "common/result.hpp"

namespace phonefarm::os {

struct RemovedTree {
  std::uint64_t entries = 0;  // files, links and directories unlinked
  std::uint64_t bytes = 0;    // st_blocks * 512 of what was unlinked (space given back)
};

// Removes `path` and everything under it. A missing `path` is success with
// nothing removed; a `path` that is a symbolic link or a file is unlinked
// (its target untouched). The error names the first entry that could not be
// removed; what could be removed is gone either way.
Result<RemovedTree> removeTree(const std::filesystem::path& path);
// Everything under the directory `path`, which itself stays (for a helper
// that may empty a directory but not unlink it from its parent).
Result<RemovedTree> removeTreeContents(const std::filesystem::path& path);

}  // namespace phonefarm::os
