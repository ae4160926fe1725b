// phonefarmctl against the real agent: each subcommand's table or words, the
// --json passthrough, and the error wording and exit codes of its --help
// footer (1 API error, 3 agent unreachable).
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "tests/integration/agent_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;

struct CtlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string shellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

class Phonefarmctl : public AgentFixture {
 protected:
  std::string writeToken(const char* token) {
    const auto path = dir_.path() / (std::string("ctl-token-") + token);
    writeFile(path, std::string(token) + "\n", 0600);
    return path.string();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Runs phonefarmctl --url <agent> --token-file <token> args...
  CtlResult ctl(const std::vector<std::string>& args, const char* token = kOperateToken,
                const std::string& url_override = "") {
    std::string cmd = shellQuote(PHONEFARMCTL_BINARY);
    cmd += " --url " + shellQuote(url_override.empty() ? url() : url_override);
    cmd += " --token-file " + shellQuote(writeToken(token));
    for (const auto& a : args) cmd += " " + shellQuote(a);
    const auto err_path = dir_.path() / "ctl-stderr";
    cmd += " 2>" + shellQuote(err_path.string());
    CtlResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) {
      ADD_FAILURE() << "popen failed";
      return r;
    }
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream in(err_path);
    std::stringstream ss;
    ss << in.rdbuf();
    r.err = ss.str();
    return r;
  }
};

// A line of `text` holding every one of `words`, "" when none does.
std::string lineWith(const std::string& text, const std::vector<std::string>& words) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    bool all = true;
    for (const auto& w : words) all = all && line.find(w) != std::string::npos;
    if (all) return line;
  }
  return "";
}

TEST_F(Phonefarmctl, PhonesTableListsBothPhones) {
  auto r = ctl({"phones"}, kReadToken);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(lineWith(r.out, {"ID", "SERIAL", "ADB", "HEALTH", "CURRENT", "QUEUE", "LAST-RESET"}), "") << r.out;
  EXPECT_NE(lineWith(r.out, {"phone_01", "127.0.0.1:5555"}), "") << r.out;
  EXPECT_NE(lineWith(r.out, {"phone_02", "R58M123ABC"}), "") << r.out;
  // Columns are aligned: SERIAL starts at the same offset on every line.
  const auto header = lineWith(r.out, {"SERIAL"});
  const auto p1 = lineWith(r.out, {"phone_01"});
  const auto p2 = lineWith(r.out, {"phone_02"});
  EXPECT_EQ(header.find("SERIAL"), p1.find("127.0.0.1:5555")) << r.out;
  EXPECT_EQ(header.find("SERIAL"), p2.find("R58M123ABC")) << r.out;
}

TEST_F(Phonefarmctl, ProcessesJsonIsTheAgentsJson) {
  submit("ctl-p1", 2);
  auto r = ctl({"--json", "processes", "--status", "queued", "--phone", "phone_01", "--limit", "5"}, kReadToken);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json::value v;
  ASSERT_NO_THROW(v = json::parse(r.out)) << r.out;
  const auto& list = v.at("processes").as_array();
  ASSERT_EQ(list.size(), 1u) << r.out;
  EXPECT_EQ(list.at(0).at("process_id"), "ctl-p1");

  auto table = ctl({"processes"}, kReadToken);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(lineWith(table.out, {"ID", "STATUS", "PHONE", "ACCOUNT", "ITEMS", "CREATED"}), "") << table.out;
  EXPECT_NE(lineWith(table.out, {"ctl-p1", "queued", "phone_01", "account_1", " 2 "}), "") << table.out;
}

TEST_F(Phonefarmctl, ShowListsItems) {
  submit("ctl-show", 2);
  auto r = ctl({"show", "ctl-show"}, kReadToken);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(lineWith(r.out, {"status", "queued"}), "") << r.out;
  EXPECT_NE(lineWith(r.out, {"ctl-show-q0", "pending"}), "") << r.out;
  EXPECT_NE(lineWith(r.out, {"ctl-show-q1", "pending"}), "") << r.out;
  EXPECT_NE(lineWith(r.out, {"cancel:", "none"}), "") << r.out;
}

TEST_F(Phonefarmctl, CancelInWordsThenIgnoredThenAuditTrail) {
  submit("ctl-c1", 1);
  auto r = ctl({"cancel", "ctl-c1", "--reason", "r", "--strategy", "hard"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("cancel_requested: 1 pending item cancelled"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("process now cancelled"), std::string::npos) << r.out;

  auto again = ctl({"cancel", "ctl-c1", "--reason", "again"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("ignored: process already cancelled"), std::string::npos) << again.out;

  auto shown = ctl({"show", "ctl-c1"}, kReadToken);
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(lineWith(shown.out, {"cancel:", "hard", "reason \"r\""}), "") << shown.out;
  EXPECT_NE(lineWith(shown.out, {"hard", "cancel_requested"}), "") << shown.out;
  EXPECT_NE(lineWith(shown.out, {"ignored_terminal", "again"}), "") << shown.out;
}

TEST_F(Phonefarmctl, CancelOfTwoPendingItemsUsesPlural) {
  submit("ctl-c2", 2);
  auto r = ctl({"cancel", "ctl-c2", "--reason", "r", "--strategy", "soft_then_force", "--force-after", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("cancel_requested: 2 pending items cancelled; nothing was executing"), std::string::npos)
      << r.out;
}

TEST_F(Phonefarmctl, UnknownProcessIsNotFound) {
  auto r = ctl({"show", "nope"}, kReadToken);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("process nope not found"), std::string::npos) << r.err;
}

TEST_F(Phonefarmctl, ReadTokenCannotCancel) {
  submit("ctl-scope", 1);
  auto r = ctl({"cancel", "ctl-scope", "--reason", "r"}, kReadToken);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("your token lacks the operate scope"), std::string::npos) << r.err;
  // Nothing changed.
  auto shown = ctl({"show", "ctl-scope"}, kReadToken);
  EXPECT_NE(lineWith(shown.out, {"status", "queued"}), "") << shown.out;
}

TEST_F(Phonefarmctl, UnknownTokenIsNotAccepted) {
  auto r = ctl({"phones"}, "not-a-known-token-0123456789");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("the token was not accepted"), std::string::npos) << r.err;
}

TEST_F(Phonefarmctl, ValidationErrorsAreFieldAndMessage) {
  submit("ctl-val", 1);
  // phonefarmctl checks --reason itself; an over-long one only the agent rejects.
  auto r = ctl({"cancel", "ctl-val", "--reason", std::string(1001, 'x')});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("\n  reason: "), std::string::npos) << r.err;
}

TEST_F(Phonefarmctl, UnreachableAgentExitsThree) {
  auto r = ctl({"phones"}, kReadToken, "http://127.0.0.1:1");
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_NE(r.err.find("cannot reach the agent at http://127.0.0.1:1"), std::string::npos) << r.err;
}

TEST_F(Phonefarmctl, UsageErrorsExitTwo) {
  auto bad_strategy = ctl({"cancel", "x", "--reason", "r", "--strategy", "gentle"});
  EXPECT_EQ(bad_strategy.exit_code, 2) << bad_strategy.err;
  auto no_reason = ctl({"cancel", "x"});
  EXPECT_EQ(no_reason.exit_code, 2) << no_reason.err;
  auto help = ctl({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("3  the agent could not be reached"), std::string::npos) << help.out;
}

TEST_F(Phonefarmctl, ResetPrintsTheResetIdAndStatus) {
  auto r = ctl({"reset", "phone_01", "--reason", "flaky usb"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.rfind("reset ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find(" of phone_01: "), std::string::npos) << r.out;
  auto phones = call("GET", "/phones/phone_01", "", kReadToken);
  ASSERT_EQ(phones.status, 200) << phones.body;
  const auto reset_id = std::string(phones.json().at("last_reset").at("reset_id").as_string());
  EXPECT_NE(r.out.find("reset " + reset_id + " of phone_01"), std::string::npos) << r.out << phones.body;
}

TEST_F(Phonefarmctl, ResetUnknownPhoneIsNotFound) {
  auto r = ctl({"reset", "phone_99", "--reason", "flaky"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("phone phone_99 not found"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace phonefarm::testing
