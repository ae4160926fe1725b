// Unit tests for the tokens file: both secret forms, comments, every parse
// error (with its line, and never with the secret), the file-mode check, and
// authentication picking the right principal.
#include "common/config/tokens.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cctype>
#include <fstream>
#include <string>

namespace phonefarm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr std::string_view kCiSecret = "ci-token-0123456789abcdef";
constexpr std::string_view kOpsSecret = "ops/Token_with.punct!~0123";
// sha256("abc"), the FIPS 180-2 test vector.
constexpr std::string_view kAbcHex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

std::string hex(const Sha256Digest& d) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : d) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// The message of the TokenFileError that parsing `text` throws ("" if none).
std::string parseError(std::string_view text) {
  try {
    TokenSet::parse(text, "tokens");
  } catch (const TokenFileError& e) {
    return e.what();
  }
  return "";
}

TEST(Sha256Test, MatchesKnownVectors) {
  EXPECT_EQ(hex(sha256("abc")), kAbcHex);
  EXPECT_EQ(hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(ScopeTest, NamesRoundTrip) {
  for (Scope s : {Scope::kRead, Scope::kOperate, Scope::kSchedule}) EXPECT_EQ(parseScope(scopeName(s)), s);
  EXPECT_EQ(scopeName(Scope::kRead), "read");
  EXPECT_EQ(scopeName(Scope::kOperate), "operate");
  EXPECT_EQ(scopeName(Scope::kSchedule), "schedule");
  EXPECT_EQ(parseScope("admin"), std::nullopt);
  EXPECT_EQ(parseScope("Read"), std::nullopt);
  EXPECT_EQ(parseScope(""), std::nullopt);
}

TEST(ScopeTest, EachScopeIncludesTheOnesBelowIt) {
  EXPECT_TRUE(scopeAllows(Scope::kRead, Scope::kRead));
  EXPECT_FALSE(scopeAllows(Scope::kRead, Scope::kOperate));
  EXPECT_FALSE(scopeAllows(Scope::kRead, Scope::kSchedule));
  EXPECT_TRUE(scopeAllows(Scope::kOperate, Scope::kRead));
  EXPECT_TRUE(scopeAllows(Scope::kOperate, Scope::kOperate));
  EXPECT_FALSE(scopeAllows(Scope::kOperate, Scope::kSchedule));
  EXPECT_TRUE(scopeAllows(Scope::kSchedule, Scope::kRead));
  EXPECT_TRUE(scopeAllows(Scope::kSchedule, Scope::kOperate));
  EXPECT_TRUE(scopeAllows(Scope::kSchedule, Scope::kSchedule));
}

TEST(TokenParseTest, PlainAndHashedSecretsWithCommentsAndBlankLines) {
  const std::string ci_secret(kCiSecret);
  const std::string ops_secret(kOpsSecret);
  std::string text;
  text += "# who may call this agent\n";
  text += "#ci read " + ci_secret + " disabled: a comment needs no space after '#'\n";
  text += "\n";
  text += "   # indented comment\n";
  text += "ci read " + ci_secret + "\n";
  text += "\t\n";
  text += "ops\toperate \t" + ops_secret + "  \r\n";
  text += "sched.v2 schedule sha256:" + upper(kAbcHex) + "\n";
  text += "  lab-1 read sha256:" + hex(sha256("lab-secret-0123456789"));  // no final newline
  const TokenSet set = TokenSet::parse(text, "tokens");
  EXPECT_EQ(set.size(), 4u);

  const auto ci = set.authenticate(kCiSecret);
  ASSERT_TRUE(ci.has_value());
  EXPECT_EQ(ci->name, "ci");
  EXPECT_EQ(ci->scope, Scope::kRead);

  const auto ops = set.authenticate(kOpsSecret);
  ASSERT_TRUE(ops.has_value());
  EXPECT_EQ(ops->name, "ops");
  EXPECT_EQ(ops->scope, Scope::kOperate);

  // Upper-case hex in the file matches the token whose digest it is.
  const auto sched = set.authenticate("abc");
  ASSERT_TRUE(sched.has_value());
  EXPECT_EQ(sched->name, "sched.v2");
  EXPECT_EQ(sched->scope, Scope::kSchedule);

  const auto lab = set.authenticate("lab-secret-0123456789");
  ASSERT_TRUE(lab.has_value());
  EXPECT_EQ(lab->name, "lab-1");
}

TEST(TokenParseTest, HashedEntryDoesNotAcceptItsOwnDigestAsToken) {
  const TokenSet set = TokenSet::parse("h read sha256:" + std::string(kAbcHex) + "\n", "tokens");
  EXPECT_FALSE(set.authenticate(kAbcHex).has_value());
  EXPECT_FALSE(set.authenticate("sha256:" + std::string(kAbcHex)).has_value());
  EXPECT_TRUE(set.authenticate("abc").has_value());
}

TEST(TokenParseTest, EmptyAndCommentOnlyFilesGiveAnEmptySet) {
  EXPECT_EQ(TokenSet::parse("", "tokens").size(), 0u);
  const TokenSet comments = TokenSet::parse("# nothing yet\n\n   \n", "tokens");
  EXPECT_EQ(comments.size(), 0u);
  EXPECT_FALSE(comments.authenticate("anything-at-all-0123").has_value());
}

TEST(TokenParseTest, PlainSecretLengthLimits) {
  EXPECT_EQ(TokenSet::parse("a read " + std::string(16, 'x'), "t").size(), 1u);
  EXPECT_EQ(TokenSet::parse("a read " + std::string(512, 'x'), "t").size(), 1u);
  EXPECT_EQ(TokenSet::parse(std::string(64, 'n') + " read " + std::string(16, 'x'), "t").size(), 1u);
}

// One rejected line: the file text, the exact message, and the secret that
// must not show up in it.
struct BadTokens {
  const char* label;
  std::string text;
  std::string message;
  std::string secret;
};

class RejectedTokensTest : public ::testing::TestWithParam<BadTokens> {};

TEST_P(RejectedTokensTest, NamesLineWithoutTheSecret) {
  const std::string message = parseError(GetParam().text);
  EXPECT_EQ(message, GetParam().message);
  EXPECT_THAT(message, Not(HasSubstr(GetParam().secret)));
}

const std::string kGood = "good read " + std::string(kCiSecret) + "\n";
const std::string kSecret = "Sup3r-Secret-Value-42";

INSTANTIATE_TEST_SUITE_P(
    Errors, RejectedTokensTest,
    ::testing::Values(
        BadTokens{"MissingScope", "# c\nbob " + kSecret + "\n", "tokens:2: expected NAME SCOPE SECRET", kSecret},
        BadTokens{"SecretOnly", kGood + kSecret + "\n", "tokens:2: expected NAME SCOPE SECRET", kSecret},
        BadTokens{"ExtraField", kGood + "bob read " + kSecret + " trailing\n",
                  "tokens:2: unexpected text after the secret (expected NAME SCOPE SECRET)", kSecret},
        BadTokens{"SecretWithSpace", "bob read Sup3r-Secret Value-42\n",
                  "tokens:1: unexpected text after the secret (expected NAME SCOPE SECRET)", "Sup3r-Secret"},
        BadTokens{"UnknownScope", kGood + "\nbob admin " + kSecret + "\n",
                  "tokens:3: unknown scope 'admin' (expected read, operate or schedule)", kSecret},
        BadTokens{"SwappedColumnsDoNotEchoSecret", "bob " + kSecret + " read\n",
                  "tokens:1: unknown scope (expected read, operate or schedule)", kSecret},
        BadTokens{"DuplicateName", kGood + "good operate " + kSecret + "\n", "tokens:2: duplicate name 'good'",
                  kSecret},
        BadTokens{"NameBadChar", "bob/x read " + kSecret + "\n",
                  "tokens:1: invalid name (1-64 characters of A-Z a-z 0-9 . _ -)", kSecret},
        BadTokens{"NameTooLong", std::string(65, 'n') + " read " + kSecret + "\n",
                  "tokens:1: invalid name (1-64 characters of A-Z a-z 0-9 . _ -)", kSecret},
        BadTokens{"PlainTooShort", "bob read short-secret1\n",
                  "tokens:1: a plain secret must be 16 to 512 characters long", "short-secret1"},
        BadTokens{"PlainTooLong", "bob read " + std::string(513, 'z') + "\n",
                  "tokens:1: a plain secret must be 16 to 512 characters long", std::string(513, 'z')},
        BadTokens{"PlainNonAscii", "bob read Sup3r-Secret-\xc3\xa9-Value\n",
                  "tokens:1: a plain secret must be printable ASCII without spaces", "Sup3r-Secret"},
        BadTokens{"PlainControlChar", "bob read Sup3r-Secret\v-Value-42\n",
                  "tokens:1: a plain secret must be printable ASCII without spaces", "Sup3r-Secret"},
        BadTokens{"HashTooShort", "bob read sha256:" + std::string(kAbcHex.substr(0, 63)) + "\n",
                  "tokens:1: a sha256: secret must have exactly 64 hex digits", std::string(kAbcHex.substr(0, 63))},
        BadTokens{"HashNotHex", "bob read sha256:" + std::string(63, 'a') + "g\n",
                  "tokens:1: a sha256: secret must have exactly 64 hex digits", std::string(63, 'a')},
        BadTokens{"HashTooLong", "bob read sha256:" + std::string(kAbcHex) + "0\n",
                  "tokens:1: a sha256: secret must have exactly 64 hex digits", std::string(kAbcHex)}),
    [](const auto& param_info) { return std::string(param_info.param.label); });

TEST(TokenAuthenticateTest, RejectsEmptyUnknownAndNearMissTokens) {
  const TokenSet set = TokenSet::parse(kGood, "tokens");
  EXPECT_FALSE(set.authenticate("").has_value());
  EXPECT_FALSE(set.authenticate("not-the-token-at-all").has_value());
  const std::string secret(kCiSecret);
  EXPECT_FALSE(set.authenticate(secret.substr(0, secret.size() - 1)).has_value());
  EXPECT_FALSE(set.authenticate(secret + "x").has_value());
  EXPECT_FALSE(set.authenticate(upper(secret)).has_value());
  EXPECT_FALSE(TokenSet().authenticate(secret).has_value());
}

TEST(TokenAuthenticateTest, EmptyTokenNeverMatchesEvenTheDigestOfEmpty) {
  const TokenSet set = TokenSet::parse("blank read sha256:" + hex(sha256("")) + "\n", "tokens");
  EXPECT_FALSE(set.authenticate("").has_value());
}

TEST(TokenAuthenticateTest, SameSecretUnderTwoNamesGivesTheFirst) {
  const std::string s(kCiSecret);
  const TokenSet set = TokenSet::parse("first read " + s + "\nsecond schedule " + s + "\n", "tokens");
  const auto p = set.authenticate(s);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->name, "first");
  EXPECT_EQ(p->scope, Scope::kRead);
}

TEST(TokenAuthenticateTest, MatchesTheLastOfManyEntries) {
  std::vector<TokenEntry> entries;
  for (int i = 0; i < 50; ++i) {
    entries.push_back({"t" + std::to_string(i), Scope::kRead, sha256("token-number-" + std::to_string(i))});
  }
  entries.back().scope = Scope::kOperate;
  const TokenSet set(std::move(entries));
  const auto p = set.authenticate("token-number-49");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->name, "t49");
  EXPECT_EQ(p->scope, Scope::kOperate);
  EXPECT_EQ(set.authenticate("token-number-7")->name, "t7");
}

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "tokens_test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write(std::string_view text, mode_t mode) {
    const auto path = dir_ / "tokens";
    std::ofstream(path) << text;
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }

  std::string loadError(const std::filesystem::path& path) {
    try {
      TokenSet::loadFile(path);
    } catch (const TokenFileError& e) {
      return e.what();
    }
    return "";
  }

  std::filesystem::path dir_;
};

TEST_F(TokenFileTest, OwnerOnlyFileLoads) {
  const auto path = write(kGood, 0600);
  const TokenSet set = TokenSet::loadFile(path);
  EXPECT_EQ(set.size(), 1u);
  EXPECT_EQ(set.authenticate(kCiSecret)->name, "good");
  EXPECT_EQ(TokenSet::loadFile(write(kGood, 0400)).size(), 1u);
}

TEST_F(TokenFileTest, GroupOrWorldAccessIsRefused) {
  const auto path = write(kGood, 0644);
  EXPECT_EQ(loadError(path), path.string() +
                                 ": permissions 0644 are too open; the tokens file must not be accessible by group or "
                                 "others (chmod 600)");
  EXPECT_THAT(loadError(write(kGood, 0640)), HasSubstr(": permissions 0640 are too open"));
  EXPECT_THAT(loadError(write(kGood, 0602)), HasSubstr(": permissions 0602 are too open"));
  EXPECT_THAT(loadError(write(kGood, 0610)), HasSubstr(": permissions 0610 are too open"));
}

TEST_F(TokenFileTest, ParseErrorsNameThePath) {
  const auto path = write("# header\nbob admin " + kSecret + "\n", 0600);
  EXPECT_EQ(loadError(path), path.string() + ":2: unknown scope 'admin' (expected read, operate or schedule)");
}

TEST_F(TokenFileTest, MissingFileAndDirectoryAreRefused) {
  EXPECT_THAT(loadError(dir_ / "absent"), StartsWith((dir_ / "absent").string() + ": cannot open"));
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  EXPECT_EQ(loadError(dir_), dir_.string() + ": not a regular file");
}

}  // namespace
}  // namespace phonefarm
