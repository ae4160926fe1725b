// The command allow-list against a real directory tree: a prefix directory
// with an executable script, a non-executable file, a subdirectory, symlinks
// leading out of and within it, a sibling "<prefix>X", and a symlink to the
// prefix itself. Also how parseSubmitRequest reports the refusals.
#include "agent/exec/command_policy.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/api/request_validation.hpp"
#include "common/os/user_lookup.hpp"

namespace phonefarm::exec {
namespace {

namespace fs = std::filesystem;
using api::CommandCheck;
using api::FieldErrors;
using api::parseSubmitRequest;
using api::SubmitRequest;

class CommandPolicyTest : public ::testing::Test {
 protected:
  CommandPolicyTest() {
    const fs::path tmp = fs::temp_directory_path() / ("command-policy-" + std::to_string(::getpid()));
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    root_ = fs::canonical(tmp).string();  // the temp dir may itself sit behind a symlink
    jobs_ = root_ + "/jobs";
    fs::create_directories(jobs_ + "/sub");
    writeFile(jobs_ + "/run.sh", fs::perms(0755));
    writeFile(jobs_ + "/sub/b.sh", fs::perms(0755));
    writeFile(jobs_ + "/data.txt", fs::perms(0644));
    writeFile(jobs_ + "/group-only.sh", fs::perms(0610));
    fs::create_symlink("/usr/bin/id", jobs_ + "/escape");
    fs::create_symlink(jobs_ + "/sub/b.sh", jobs_ + "/inner");
    fs::create_directories(root_ + "/jobsX");
    writeFile(root_ + "/jobsX/a.sh", fs::perms(0755));
    fs::create_directory_symlink(jobs_, root_ + "/jobs-link");
  }
  ~CommandPolicyTest() override { fs::remove_all(root_); }

  static void writeFile(const std::string& path, fs::perms perms) {
    std::ofstream(path) << "#!/bin/sh\nexit 0\n";
    fs::permissions(path, perms, fs::perm_options::replace);
  }

  std::optional<std::string> check(const std::string& program) const {
    return checkCommandAllowed(program, {jobs_ + "/"});
  }

  std::string root_;
  std::string jobs_;
};

TEST_F(CommandPolicyTest, ExecutablesUnderThePrefixAreAllowed) {
  EXPECT_EQ(check(jobs_ + "/run.sh"), std::nullopt);
  EXPECT_EQ(check(jobs_ + "/sub/b.sh"), std::nullopt);
  EXPECT_EQ(check(jobs_ + "/sub/../run.sh"), std::nullopt);
  EXPECT_EQ(check(jobs_ + "//run.sh"), std::nullopt);
  // Any execute bit will do.
  EXPECT_EQ(check(jobs_ + "/group-only.sh"), std::nullopt);
  // A symlink that stays inside the prefix is judged by its target.
  EXPECT_EQ(check(jobs_ + "/inner"), std::nullopt);
}

TEST_F(CommandPolicyTest, DotDotOutOfThePrefixIsRejected) {
  const std::string program = jobs_ + "/../../../../../../../../../../../bin/sh";
  const auto refusal = check(program);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(*refusal, "command " + program + " resolves to " + fs::canonical("/bin/sh").string() +
                          ", which is not under an allowed prefix (" + jobs_ + "/)");
}

TEST_F(CommandPolicyTest, SymlinkInsideThePrefixPointingOutsideIsRejected) {
  EXPECT_EQ(check(jobs_ + "/escape"), "command " + jobs_ + "/escape resolves to " +
                                          fs::canonical("/usr/bin/id").string() +
                                          ", which is not under an allowed prefix (" + jobs_ + "/)");
}

TEST_F(CommandPolicyTest, SiblingDirectorySharingTheStringPrefixIsRejected) {
  for (const std::string& prefix : {jobs_, jobs_ + "/"}) {
    EXPECT_EQ(checkCommandAllowed(jobs_ + "/run.sh", {prefix}), std::nullopt) << prefix;
    EXPECT_EQ(checkCommandAllowed(jobs_ + "/sub/b.sh", {prefix}), std::nullopt) << prefix;
    const auto refusal = checkCommandAllowed(root_ + "/jobsX/a.sh", {prefix});
    ASSERT_TRUE(refusal.has_value()) << prefix;
    EXPECT_NE(refusal->find("which is not under an allowed prefix (" + prefix + ")"), std::string::npos) << *refusal;
  }
  // A prefix naming a file allows exactly that file.
  EXPECT_EQ(checkCommandAllowed(jobs_ + "/run.sh", {jobs_ + "/run.sh"}), std::nullopt);
  EXPECT_TRUE(checkCommandAllowed(jobs_ + "/run.shX", {jobs_ + "/run.sh"}).has_value());
}

TEST_F(CommandPolicyTest, PrefixGivenThroughASymlinkIsResolved) {
  const std::string link = root_ + "/jobs-link/";
  EXPECT_EQ(checkCommandAllowed(jobs_ + "/run.sh", {link}), std::nullopt);
  EXPECT_EQ(checkCommandAllowed(root_ + "/jobs-link/sub/b.sh", {link}), std::nullopt);
  EXPECT_EQ(checkCommandAllowed(root_ + "/jobs-link/run.sh", {jobs_}), std::nullopt);
  EXPECT_TRUE(checkCommandAllowed(root_ + "/jobsX/a.sh", {link}).has_value());
  EXPECT_TRUE(checkCommandAllowed(root_ + "/jobs-link/escape", {link}).has_value());
}

TEST_F(CommandPolicyTest, MissingPrefixIsNormalisedLexically) {
  // ".../nope" does not exist, so realpath cannot resolve the prefix; ".." is folded by hand.
  EXPECT_EQ(checkCommandAllowed(jobs_ + "/run.sh", {root_ + "/nope/../jobs/"}), std::nullopt);
  EXPECT_EQ(checkCommandAllowed(jobs_ + "/run.sh", {root_ + "/nope/../nope2/../jobs"}), std::nullopt);
  EXPECT_TRUE(checkCommandAllowed(jobs_ + "/run.sh", {root_ + "/nope/"}).has_value());
}

TEST_F(CommandPolicyTest, RootPrefixAllowsEverythingAndAnEmptyListNothing) {
  EXPECT_EQ(checkCommandAllowed("/usr/bin/id", {"/"}), std::nullopt);
  EXPECT_EQ(checkCommandAllowed(jobs_ + "/escape", {"/"}), std::nullopt);
  EXPECT_EQ(checkCommandAllowed(root_ + "/jobsX/a.sh", {"/"}), std::nullopt);
  const std::string id = fs::canonical("/usr/bin/id").string();
  EXPECT_EQ(checkCommandAllowed("/usr/bin/id", {}),
            "command /usr/bin/id resolves to " + id + ", which is not under an allowed prefix (none configured)");
  EXPECT_TRUE(checkCommandAllowed(jobs_ + "/run.sh", {}).has_value());
}

TEST_F(CommandPolicyTest, AnyOfSeveralPrefixesWillDo) {
  const std::vector<std::string> prefixes{root_ + "/nope/", root_ + "/jobsX/"};
  EXPECT_EQ(checkCommandAllowed(root_ + "/jobsX/a.sh", prefixes), std::nullopt);
  const auto refusal = checkCommandAllowed(jobs_ + "/run.sh", prefixes);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_NE(refusal->find("(" + root_ + "/nope/, " + root_ + "/jobsX/)"), std::string::npos) << *refusal;
}

TEST_F(CommandPolicyTest, NonexistentProgramIsRejected) {
  EXPECT_EQ(check(jobs_ + "/missing.sh"), "command not found: " + jobs_ + "/missing.sh (No such file or directory)");
  EXPECT_EQ(check(jobs_ + "/run.sh/x"), "command not found: " + jobs_ + "/run.sh/x (Not a directory)");
  EXPECT_EQ(checkCommandAllowed("/x", {"/"}), "command not found: /x (No such file or directory)");
}

TEST_F(CommandPolicyTest, DirectoryAndNonExecutableFileAreRejected) {
  EXPECT_EQ(check(jobs_ + "/sub"), "command " + jobs_ + "/sub is not a regular file");
  EXPECT_EQ(check(jobs_), "command " + jobs_ + " is not a regular file");
  EXPECT_EQ(check(jobs_ + "/data.txt"), "command " + jobs_ + "/data.txt is not executable");
}

TEST_F(CommandPolicyTest, RelativeProgramIsRejected) {
  EXPECT_TRUE(checkCommandAllowed("run.sh", {"/"}).has_value());
  EXPECT_TRUE(checkCommandAllowed("", {"/"}).has_value());
}

TEST_F(CommandPolicyTest, ResolveGivesThePathToExecute) {
  fs::create_symlink(jobs_ + "/run.sh", jobs_ + "/alias.sh");
  auto resolved = resolveAllowedCommand(jobs_ + "/alias.sh", {jobs_ + "/"});
  ASSERT_TRUE(resolved) << resolved.error().message;
  EXPECT_EQ(*resolved, fs::canonical(jobs_ + "/run.sh").string());
  auto refused = resolveAllowedCommand("/usr/bin/id", {jobs_ + "/"});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::kInvalid);
  EXPECT_NE(refused.error().message.find("not under an allowed prefix"), std::string::npos);
}

TEST_F(CommandPolicyTest, APrefixOrADirectoryAboveItWritableByTheWorkUserIsFound) {
  const uid_t work_uid = 4242;
  const gid_t work_gid = 4242;
  EXPECT_EQ(writableDirOnPrefix(jobs_ + "/", work_uid, work_gid, {}), std::nullopt);
  // Group-writable for a group the user is in.
  fs::permissions(root_, fs::perms(0775), fs::perm_options::replace);
  ASSERT_EQ(::chown(root_.c_str(), 0, 4343), 0);
  EXPECT_EQ(writableDirOnPrefix(jobs_ + "/", work_uid, work_gid, {4343}), root_);
  EXPECT_EQ(writableDirOnPrefix(jobs_ + "/", work_uid, work_gid, {}), std::nullopt);
  // World-writable.
  fs::permissions(root_, fs::perms(0777), fs::perm_options::replace);
  EXPECT_EQ(writableDirOnPrefix(jobs_ + "/", work_uid, work_gid, {}), root_);
  // Sticky (like /tmp): fine while the entry below is not the user's.
  fs::permissions(root_, fs::perms(01777), fs::perm_options::replace);
  EXPECT_EQ(writableDirOnPrefix(jobs_ + "/", work_uid, work_gid, {}), std::nullopt);
  // Owned by the user, even without a write bit: it could chmod it.
  fs::permissions(root_, fs::perms(0755), fs::perm_options::replace);
  ASSERT_EQ(::chown(jobs_.c_str(), work_uid, 0), 0);
  fs::permissions(jobs_, fs::perms(0555), fs::perm_options::replace);
  EXPECT_EQ(writableDirOnPrefix(jobs_ + "/", work_uid, work_gid, {}), jobs_);
  ASSERT_EQ(::chown(jobs_.c_str(), 0, 0), 0);
  fs::permissions(jobs_, fs::perms(0755), fs::perm_options::replace);
}

// At launch: the command file and every directory above it, for run_as.
TEST_F(CommandPolicyTest, ACommandOrADirectoryOnItsPathWritableByRunAsIsFound) {
  auto nobody = os::lookupUser("nobody");
  ASSERT_TRUE(nobody && *nobody);
  const std::string script = jobs_ + "/sub/b.sh";
  EXPECT_EQ(checkCommandNotWritableBy(script, "nobody"), std::nullopt);
  // The file itself: world-writable, or owned by run_as (it could chmod it).
  fs::permissions(script, fs::perms(0757), fs::perm_options::replace);
  auto why = checkCommandNotWritableBy(script, "nobody");
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("command " + script + " is writable by (or owned by) run_as user nobody"), std::string::npos)
      << *why;
  fs::permissions(script, fs::perms(0755), fs::perm_options::replace);
  ASSERT_EQ(::chown(script.c_str(), (*nobody)->uid, 0), 0);
  EXPECT_TRUE(checkCommandNotWritableBy(script, "nobody"));
  ASSERT_EQ(::chown(script.c_str(), 0, 0), 0);
  // A directory below the prefix, which start-up does not look at.
  fs::permissions(jobs_ + "/sub", fs::perms(0777), fs::perm_options::replace);
  why = checkCommandNotWritableBy(script, "nobody");
  ASSERT_TRUE(why);
  EXPECT_NE(why->find(": " + jobs_ + "/sub is writable by"), std::string::npos) << *why;
  fs::permissions(jobs_ + "/sub", fs::perms(0755), fs::perm_options::replace);
  EXPECT_EQ(checkCommandNotWritableBy(script, "nobody"), std::nullopt);
  EXPECT_EQ(checkCommandNotWritableBy(script, "no-such-user-pf"), std::nullopt);
}

// parseSubmitRequest asks the check about each structurally valid command and
// reports each refusal at command[0], alongside every other problem.
TEST_F(CommandPolicyTest, SubmitValidationReportsEachRefusedItem) {
  std::vector<std::string> asked;
  const CommandCheck policy = [&](const std::string& program) {
    asked.push_back(program);
    return checkCommandAllowed(program, {jobs_ + "/"});
  };
  const std::string body = R"({"phone_id":"phone_01","account_id":"a","queue_items":[)"
                           R"({"command":[")" +
                           jobs_ +
                           R"(/run.sh","--x"]},)"
                           R"({"command":["/usr/bin/id"]},)"
                           R"({"command":["relative"]},)"
                           R"({"command":["/usr/bin/id",1]},)"
                           R"({"command":[")" +
                           jobs_ + R"(/escape"],"timeout_seconds":0}]})";
  auto parsed = parseSubmitRequest(
      body, [](std::string_view id) { return id == "phone_01"; }, policy);
  ASSERT_TRUE(std::holds_alternative<FieldErrors>(parsed));
  const auto& errors = std::get<FieldErrors>(parsed);
  ASSERT_EQ(errors.size(), 5u);
  EXPECT_EQ(errors[0].loc, (boost::json::array{"body", "queue_items", 1, "command", 0}));
  EXPECT_EQ(errors[0].type, "value_error");
  const std::string id = fs::canonical("/usr/bin/id").string();
  EXPECT_EQ(errors[0].msg, "Value error, command /usr/bin/id resolves to " + id +
                               ", which is not under an allowed prefix (" + jobs_ + "/)");
  EXPECT_EQ(errors[1].loc, (boost::json::array{"body", "queue_items", 2, "command", 0}));
  EXPECT_EQ(errors[1].msg, "Value error, the program must be an absolute path");
  EXPECT_EQ(errors[2].loc, (boost::json::array{"body", "queue_items", 3, "command", 1}));
  EXPECT_EQ(errors[2].type, "string_type");
  EXPECT_EQ(errors[3].loc, (boost::json::array{"body", "queue_items", 4, "command", 0}));
  EXPECT_EQ(errors[3].type, "value_error");
  EXPECT_EQ(errors[4].loc, (boost::json::array{"body", "queue_items", 4, "timeout_seconds"}));
  // Structurally invalid commands are not looked at.
  EXPECT_EQ(asked, (std::vector<std::string>{jobs_ + "/run.sh", "/usr/bin/id", jobs_ + "/escape"}));

  const std::string ok =
      R"({"phone_id":"phone_01","account_id":"a","queue_items":[{"command":[")" + jobs_ + R"(/inner"]}]})";
  auto accepted = parseSubmitRequest(
      ok, [](std::string_view) { return true; }, policy);
  ASSERT_TRUE(std::holds_alternative<SubmitRequest>(accepted));
  EXPECT_EQ(std::get<SubmitRequest>(accepted).items.at(0).command, std::vector<std::string>{jobs_ + "/inner"});
}

}  // namespace
}  // namespace phonefarm::exec
