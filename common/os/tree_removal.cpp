// removeTree (tree_removal.hpp): a depth-first walk over directory
// descriptors. Deep trees do not deepen the recursion without bound: below
// kMaxDepth a directory is moved up to the top of the tree (renameat between
// two descriptors of the same tree) and removed from there on a later pass,
// so a job that nests directories a million deep costs time, not stack or
// descriptors.
#include "common/os/tree_removal.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>
#include <vector>

#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::os {
namespace {

constexpr int kMaxDepth = 64;
constexpr int kMaxPasses = 1'000'000;  // moved-up directories give the top level more passes

// One removal: the first error, what was removed, and the top directory's
// descriptor (where too-deep directories are moved).
struct TreeRemover {
  // Empties the directory `fd` (at `where`, for messages); sets moved_up_
  // when it moved a directory up to the top (which then needs another pass).
  void emptyDirectory(int fd, const std::string& where, int depth) {
    DIR* dir = ::fdopendir(::dup(fd));
    if (dir == nullptr) return fail("opendir " + where, errno);
    ::rewinddir(dir);  // the dup shares the offset: a later pass must read from the start
    std::vector<std::pair<std::string, unsigned char>> names;
    errno = 0;
    while (const dirent* entry = ::readdir(dir)) {
      const std::string_view name(entry->d_name);
      if (name != "." && name != "..") names.emplace_back(name, entry->d_type);
    }
    const int read_errno = errno;
    ::closedir(dir);
    if (read_errno != 0) fail("readdir " + where, read_errno);
    for (const auto& [name, type] : names) {
      std::string path = where;
      path.append("/").append(name);
      removeEntry(fd, name, type, path, depth);
    }
  }

  // Removes one entry of the directory `parent_fd`.
  void removeEntry(int parent_fd, const std::string& name, unsigned char type, const std::string& where, int depth) {
    if (type != DT_DIR && type != DT_UNKNOWN) {
      if (unlinkCounted(parent_fd, name, 0)) return;
      if (errno != EISDIR) return fail("unlink " + where, errno);
    }
    auto dir = openDirectory(parent_fd, name, where);
    if (!dir) {
      // Not a directory (any more): a file or a link planted in its place.
      if (errno == ENOTDIR || errno == ELOOP) {
        if (!unlinkCounted(parent_fd, name, 0) && errno != ENOENT) fail("unlink " + where, errno);
        return;
      }
      if (errno != ENOENT) fail("open " + where, errno);
      return;
    }
    if (depth >= kMaxDepth) {
      // Too deep to descend further: move it to the top of the tree.
      const std::string moved = ".pf-deep-" + std::to_string(++moved_);
      if (::renameat(parent_fd, name.c_str(), top_fd_, moved.c_str()) != 0) return fail("rename " + where, errno);
      moved_up_ = true;
      return;
    }
    emptyDirectory(dir->get(), where, depth + 1);
    dir->reset();
    if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) == 0) {
      ++removed_.entries;
    } else if (errno != ENOENT) {
      fail("rmdir " + where, errno);
    }
  }

  // Opens `name` under `parent_fd` as a directory, never through a link. A
  // directory this process may change (its own, or any as root) whose mode
  // keeps us out (chmod 000 by the work) gets u+rwx first, set through an
  // O_PATH descriptor of the very directory that was checked, so a link
  // swapped in meanwhile cannot redirect the chmod.
  std::optional<FileDescriptor> openDirectory(int parent_fd, const std::string& name, const std::string& where) {
    FileDescriptor path(::openat(parent_fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!path) return std::nullopt;
    struct stat st {};
    if (::fstat(path.get(), &st) != 0) return std::nullopt;
    const uid_t me = ::geteuid();
    if ((st.st_mode & S_IRWXU) != S_IRWXU && (st.st_uid == me || me == 0)) {
      const std::string proc = "/proc/self/fd/" + std::to_string(path.get());
      if (::fchmodat(AT_FDCWD, proc.c_str(), (st.st_mode & 07777) | S_IRWXU, 0) != 0) {
        fail("chmod " + where, errno);
      }
    }
    FileDescriptor dir(::openat(path.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
      const int err = errno;
      fail("open " + where, err);
      errno = EACCES;  // reported; the caller must not try it as a file
      return std::nullopt;
    }
    return dir;
  }

  bool unlinkCounted(int parent_fd, const std::string& name, int flags) {
    struct stat st {};
    const bool have = ::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (::unlinkat(parent_fd, name.c_str(), flags) != 0) return false;
    ++removed_.entries;
    // A file with other hard links keeps its blocks.
    if (have && st.st_nlink <= 1) removed_.bytes += static_cast<std::uint64_t>(st.st_blocks) * 512;
    return true;
  }

  void fail(const std::string& what, int err) {
    if (!error_) error_ = sysError(what, err);
  }

  int top_fd_ = -1;
  RemovedTree removed_;
  std::optional<Error> error_;
  std::uint64_t moved_ = 0;
  bool moved_up_ = false;
};

}  // namespace

namespace {

Result<RemovedTree> remove(const std::filesystem::path& path, bool keep_top) {
  const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : ".";
  const std::string name = path.filename().string();
  if (name.empty() || name == "." || name == "..")
    return makeError(ErrorKind::kInvalid, "not a tree: " + path.string());
  // Up to the tree's parent the path is the agent's own (state_dir/...);
  // O_PATH: the parent need only be searchable, not readable.
  FileDescriptor parent_fd(::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) {
    if (errno == ENOENT) return RemovedTree{};
    return sysError("open " + parent.string());
  }
  TreeRemover remover;
  auto top = remover.openDirectory(parent_fd.get(), name, path.string());
  if (!top) {
    if (errno == ENOENT) return RemovedTree{};
    if ((errno == ENOTDIR || errno == ELOOP) && !keep_top) {
      if (!remover.unlinkCounted(parent_fd.get(), name, 0) && errno != ENOENT) {
        remover.fail("unlink " + path.string(), errno);
      }
    }
  } else {
    remover.top_fd_ = top->get();
    // A pass that moved deep directories up leaves them for the next one.
    for (int pass = 0; pass < kMaxPasses; ++pass) {
      remover.moved_up_ = false;
      remover.emptyDirectory(top->get(), path.string(), 0);
      if (!remover.moved_up_) break;
    }
    top->reset();
    if (keep_top) {
      // done: only the contents were asked for
    } else if (::unlinkat(parent_fd.get(), name.c_str(), AT_REMOVEDIR) == 0) {
      ++remover.removed_.entries;
    } else if (errno != ENOENT) {
      remover.fail("rmdir " + path.string(), errno);
    }
  }
  if (remover.error_) return *remover.error_;
  return remover.removed_;
}

}  // namespace

Result<RemovedTree> removeTree(const std::filesystem::path& path) { return remove(path, false); }

Result<RemovedTree> removeTreeContents(const std::filesystem::path& path) { return remove(path, true); }

}  // namespace phonefarm::os
