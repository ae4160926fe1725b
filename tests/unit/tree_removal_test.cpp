// Unit tests for os::removeTree: trees a job left behind — directories made
// unreadable (chmod 000), symbolic links to what must survive, nesting deeper
// than the walk descends — are removed, and nothing outside them is touched.
// Run as root, the job and the remover are a child process as `nobody`: root
// could read a 000 directory anyway, so only a non-root remover shows that
// the modes are fixed.
#include "common/os/tree_removal.hpp"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "tests/support/temp_dir.hpp"

namespace phonefarm::os {
namespace {

namespace fs = std::filesystem;
using phonefarm::testing::DirAccess;
using phonefarm::testing::TempDir;

// Runs `fn` as nobody (in a child) when we are root, else here; returns
// fn's verdict (a child reports it through its exit status).
bool asUnprivileged(const std::function<bool()>& fn) {
  if (::geteuid() != 0) return fn();
  const passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) return false;
  const uid_t uid = nobody->pw_uid;
  const gid_t gid = nobody->pw_gid;
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0) _exit(2);
    _exit(fn() ? 0 : 1);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void writeText(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

class TreeRemovalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The tree's parent belongs to whoever creates and removes the tree.
    fs::permissions(dir_.path(), fs::perms(0777), fs::perm_options::replace);
  }
  TempDir dir_{DirAccess::kTraversableByOthers};
};

TEST_F(TreeRemovalTest, RemovesDirectoriesAJobMadeUnreadable) {
  const fs::path tree = dir_ / "exec-1";
  EXPECT_TRUE(asUnprivileged([&] {
    fs::create_directories(tree / "a" / "b" / "c");
    writeText(tree / "a" / "b" / "c" / "f", std::string(10000, 'x'));
    writeText(tree / "a" / "g", "y");
    fs::create_directories(tree / "w");
    // Locked from the inside out, as `chmod -R 000` leaves it.
    ::chmod((tree / "a" / "b" / "c").c_str(), 0);
    ::chmod((tree / "a" / "b").c_str(), 0);
    ::chmod((tree / "a").c_str(), 0);
    ::chmod((tree / "w").c_str(), 0500);  // readable, but entries cannot be unlinked
    ::chmod(tree.c_str(), 0);
    auto removed = removeTree(tree);
    if (!removed) {
      std::fprintf(stderr, "removeTree: %s\n", removed.error().message.c_str());
      return false;
    }
    return removed->entries == 7 && removed->bytes >= 10000;
  }));
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree)));
}

TEST_F(TreeRemovalTest, NeverFollowsALinkOutOfTheTree) {
  const fs::path outside = dir_ / "outside";
  fs::create_directories(outside / "keep");
  writeText(outside / "keep" / "precious", "data");
  const fs::path tree = dir_ / "exec-2";
  fs::create_directories(tree / "sub");
  fs::create_directory_symlink(outside, tree / "link");
  fs::create_directory_symlink(outside / "keep", tree / "sub" / "link2");
  fs::create_symlink(outside / "keep" / "precious", tree / "file-link");

  auto removed = removeTree(tree);
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree)));
  EXPECT_TRUE(fs::exists(outside / "keep" / "precious"));
}

TEST_F(TreeRemovalTest, TheTreeItselfBeingALinkRemovesOnlyTheLink) {
  const fs::path outside = dir_ / "outside";
  fs::create_directories(outside);
  writeText(outside / "precious", "data");
  fs::create_directory_symlink(outside, dir_ / "exec-3");
  auto removed = removeTree(dir_ / "exec-3");
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ / "exec-3")));
  EXPECT_TRUE(fs::exists(outside / "precious"));
}

TEST_F(TreeRemovalTest, RemovesNestingDeeperThanTheWalkDescends) {
  const fs::path tree = dir_ / "exec-4";
  fs::create_directory(tree);
  // 300 levels, built with *at calls (the path would pass PATH_MAX).
  int fd = ::open(tree.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(::mkdirat(fd, "dddddddddddddddddddd", 0700), 0);
    const int next = ::openat(fd, "dddddddddddddddddddd", O_RDONLY | O_DIRECTORY);
    ::close(fd);
    ASSERT_GE(next, 0);
    fd = next;
  }
  const int file = ::openat(fd, "leaf", O_WRONLY | O_CREAT, 0600);
  ASSERT_GE(file, 0);
  ::close(file);
  ::close(fd);

  auto removed = removeTree(tree);
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_EQ(removed->entries, 302U);  // 300 levels, the leaf and the top
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree)));
}

TEST_F(TreeRemovalTest, AMissingTreeIsNothingToDo) {
  auto removed = removeTree(dir_ / "never-created");
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_EQ(removed->entries, 0U);
}

}  // namespace
}  // namespace phonefarm::os
