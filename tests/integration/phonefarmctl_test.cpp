// phonefarmctl against the real agent: each subcommand's table or words, the
// --json passthrough, the error wording and exit codes of its --help footer
// (1 API error, 3 agent unreachable), colors (only on a terminal, or
// --color=always), `logs` (by offset, --follow, Ctrl-C, control sequences
// removed on a terminal) and the `debug-dump` archive.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "tests/integration/work_fixture.hpp"
#include "tests/support/run_command.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;

struct CtlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv (in `cwd` if given); stdout and stderr apart.
CtlResult run(const std::vector<std::string>& argv, const std::filesystem::path& cwd = {}) {
  CommandOptions options;
  options.cwd = cwd;
  options.separate_stderr = true;
  const auto r = runCommand(argv, options);
  if (r.timed_out) ADD_FAILURE() << argv.front() << " did not finish in time";
  return CtlResult{r.exit_code, r.output, r.error};
}

// Runs argv on a new pseudo-terminal (stdout and stderr both on it) with
// `env` set; returns what it printed, without the \r the terminal adds.
CtlResult runOnTerminal(const std::vector<std::string>& argv,
                        const std::vector<std::pair<std::string, std::string>>& env,
                        const std::vector<std::string>& unset = {}) {
  CtlResult r;
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  if (pid < 0) {
    ADD_FAILURE() << "forkpty failed";
    return r;
  }
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    for (const auto& k : unset) ::unsetenv(k.c_str());
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  char buf[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ADD_FAILURE() << "timed out reading the terminal; so far: " << r.out;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;  // EIO once the child's side is closed
    r.out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(master);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::erase(r.out, '\r');
  return r;
}

// The helpers over either fixture: the API tests need no work to run, the
// logs tests do (WorkFixture).
template <class Base>
class CtlFixture : public Base {
 protected:
  std::string writeToken(const char* token) {
    const auto path = this->dir_.path() / (std::string("ctl-token-") + token);
    writeFile(path, std::string(token) + "\n", 0600);
    return path.string();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(this->port_); }

  std::vector<std::string> ctlArgv(const std::vector<std::string>& args, const char* token = kOperateToken,
                                   const std::string& url_override = "") {
    std::vector<std::string> argv{PHONEFARMCTL_BINARY, "--url", url_override.empty() ? url() : url_override,
                                  "--token-file", writeToken(token)};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // Runs phonefarmctl --url <agent> --token-file <token> args... (in `cwd` if given).
  CtlResult ctl(const std::vector<std::string>& args, const char* token = kOperateToken,
                const std::string& url_override = "", const std::filesystem::path& cwd = {}) {
    return run(ctlArgv(args, token, url_override), cwd);
  }
};

using Phonefarmctl = CtlFixture<AgentFixture>;
using PhonefarmctlWork = CtlFixture<WorkFixture>;

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
  // Items are numbered from 1, the numbers `logs --item N` takes.
  EXPECT_EQ(lineWith(r.out, {"ctl-show-q0", "pending"}).rfind("1 ", 0), 0u) << r.out;
  EXPECT_EQ(lineWith(r.out, {"ctl-show-q1", "pending"}).rfind("2 ", 0), 0u) << r.out;
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

// A rack of two hubs: 1-1 (phone_01, phone_02) and 1-2 (phone_03); phone_04
// is a network phone, on no hub.
class PhonefarmctlHubs : public Phonefarmctl {
 protected:
  std::string phonesConfig() const override {
    return "[[phones]]\nid = \"phone_01\"\nserial = \"HUBSERIAL01\"\nusb_port = \"1-1.1\"\n"
           "[[phones]]\nid = \"phone_02\"\nserial = \"HUBSERIAL02\"\nusb_port = \"1-1.2\"\n"
           "[[phones]]\nid = \"phone_03\"\nserial = \"HUBSERIAL03\"\nusb_port = \"1-2.3\"\n"
           "[[phones]]\nid = \"phone_04\"\nserial = \"127.0.0.1:5555\"\n";
  }
};

TEST_F(PhonefarmctlHubs, HubsTableIsTheAgentsHubs) {
  auto api = call("GET", "/hubs", "", kReadToken);
  ASSERT_EQ(api.status, 200) << api.body;
  const auto hubs = api.json().at("hubs").as_array();
  ASSERT_EQ(hubs.size(), 2u) << api.body;

  auto r = ctl({"hubs"}, kReadToken);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto header = lineWith(r.out, {"HUB", "PHONES", "STATE", "LAST-EVENT"});
  ASSERT_NE(header, "") << r.out;
  // One line per hub of GET /hubs, with its phones, state and last event
  // ("-": none yet), aligned under the header; phone_04 is on none.
  for (const auto& hv : hubs) {
    const auto& h = hv.as_object();
    std::string phones;
    for (const auto& p : h.at("phones").as_array()) phones += (phones.empty() ? "" : ",") + std::string(p.as_string());
    const std::string id(h.at("hub_id").as_string());
    const std::string state(h.at("state").as_string());
    const auto line = lineWith(r.out, {id + " ", phones, state});
    ASSERT_NE(line, "") << "no line for hub " << id << " (" << phones << ", " << state << "):\n" << r.out;
    EXPECT_EQ(line.rfind(id, 0), 0u) << line;
    EXPECT_EQ(line.find(phones), header.find("PHONES")) << r.out;
    EXPECT_EQ(line.find(state), header.find("STATE")) << r.out;
    ASSERT_TRUE(h.at("last_event").is_null()) << api.body;  // no adb server here: no drops
    EXPECT_EQ(line.substr(header.find("LAST-EVENT")), "-") << r.out;
  }
  EXPECT_NE(lineWith(r.out, {"1-1 ", "phone_01,phone_02", "ok"}), "") << r.out;
  EXPECT_NE(lineWith(r.out, {"1-2 ", "phone_03", "ok"}), "") << r.out;
  EXPECT_EQ(r.out.find("phone_04"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;  // the header and two hubs

  // --json is the agent's answer.
  auto raw = ctl({"--json", "hubs"}, kReadToken);
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  json::value v;
  ASSERT_NO_THROW(v = json::parse(raw.out)) << raw.out;
  EXPECT_EQ(v, api.json());
}

// ---------------------------------------------------------------- colors

bool hasAnsi(const std::string& s) { return s.find("\x1b[") != std::string::npos; }

TEST_F(Phonefarmctl, ColorsOnlyWhenAskedOrOnATerminal) {
  submit("ctl-color", 1);
  // Piped (the default --color=auto): plain.
  auto piped = ctl({"processes"}, kReadToken);
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_FALSE(hasAnsi(piped.out)) << piped.out;
  // --color=always: the status is yellow, the header bold, columns still aligned.
  auto always = ctl({"--color=always", "processes"}, kReadToken);
  ASSERT_EQ(always.exit_code, 0) << always.err;
  EXPECT_NE(always.out.find("\x1b[33mqueued\x1b[0m"), std::string::npos) << always.out;
  EXPECT_NE(always.out.find("\x1b[1mID\x1b[0m"), std::string::npos) << always.out;
  auto phones = ctl({"--color=always", "phones"}, kReadToken);
  EXPECT_NE(phones.out.find("\x1b[32mready\x1b[0m"), std::string::npos) << phones.out;
  EXPECT_NE(phones.out.find("\x1b[31mabsent\x1b[0m"), std::string::npos) << phones.out;
  auto never = ctl({"--color=never", "processes"}, kReadToken);
  EXPECT_FALSE(hasAnsi(never.out)) << never.out;
  EXPECT_EQ(ctl({"--color=sometimes", "processes"}, kReadToken).exit_code, 2);

  // On a terminal: colored, unless NO_COLOR is set or TERM is dumb.
  auto tty = runOnTerminal(ctlArgv({"processes"}, kReadToken), {{"TERM", "xterm"}}, {"NO_COLOR"});
  EXPECT_EQ(tty.exit_code, 0) << tty.out;
  EXPECT_NE(tty.out.find("\x1b[33mqueued\x1b[0m"), std::string::npos) << tty.out;
  auto no_color = runOnTerminal(ctlArgv({"processes"}, kReadToken), {{"TERM", "xterm"}, {"NO_COLOR", "1"}});
  EXPECT_EQ(no_color.exit_code, 0) << no_color.out;
  EXPECT_NE(no_color.out.find("queued"), std::string::npos) << no_color.out;
  EXPECT_FALSE(hasAnsi(no_color.out)) << no_color.out;
  auto dumb = runOnTerminal(ctlArgv({"processes"}, kReadToken), {{"TERM", "dumb"}}, {"NO_COLOR"});
  EXPECT_NE(dumb.out.find("queued"), std::string::npos) << dumb.out;
  EXPECT_FALSE(hasAnsi(dumb.out)) << dumb.out;
}

// ---------------------------------------------------------------- logs

TEST_F(PhonefarmctlWork, LogsPrintsAnItemsStreamAsWritten) {
  const std::string one = writeJob("one.sh", "#!/bin/sh\necho hello from one\necho trouble >&2\n");
  const std::string two = writeJob("two.sh", "#!/bin/sh\nprintf 'two\\000bytes\\n'\n");
  submitWork("ctl-logs", {{one}, {two}});
  waitForStatus("ctl-logs", "succeeded");

  auto last = ctl({"logs", "ctl-logs"}, kReadToken);  // default: the last item that started
  ASSERT_EQ(last.exit_code, 0) << last.err;
  EXPECT_EQ(last.out, std::string("two\0bytes\n", 10));
  auto first = ctl({"logs", "ctl-logs", "--item", "1"}, kReadToken);
  EXPECT_EQ(first.out, "hello from one\n");
  auto err = ctl({"logs", "ctl-logs", "--item", "1", "--stream", "stderr"}, kReadToken);
  EXPECT_EQ(err.out, "trouble\n");
  auto followed = ctl({"logs", "ctl-logs", "--item", "1", "--follow"}, kReadToken);  // ended: returns at once
  EXPECT_EQ(followed.exit_code, 0) << followed.err;
  EXPECT_EQ(followed.out, "hello from one\n");

  auto beyond = ctl({"logs", "ctl-logs", "--item", "3"}, kReadToken);
  EXPECT_EQ(beyond.exit_code, 1);
  EXPECT_NE(beyond.err.find("process ctl-logs has 2 items, not 3"), std::string::npos) << beyond.err;
  auto unknown = ctl({"logs", "nope"}, kReadToken);
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("process nope not found"), std::string::npos) << unknown.err;
  EXPECT_EQ(ctl({"logs", "ctl-logs", "--stream", "stdin"}, kReadToken).exit_code, 2);
}

TEST_F(PhonefarmctlWork, WatchPrintsEventsOneLineEachAndStopsOnCtrlC) {
  const std::string ok = writeJob("ok.sh", "#!/bin/sh\nexit 0\n");
  submitWork("ctl-other", {{ok}});
  submitWork("ctl-watch", {{ok}});
  waitForStatus("ctl-watch", "succeeded");
  auto argv = ctlArgv({"watch", "--after", "0", "--process", "ctl-watch"}, kReadToken);
  AgentProcess plain(PHONEFARMCTL_BINARY, std::vector<std::string>(argv.begin() + 1, argv.end()), dir_.path());
  ASSERT_TRUE(plain.waitForLine("process.status phone_id=phone_01 process_id=ctl-watch status=succeeded",
                                std::chrono::seconds(20)))
      << plain.output();
  EXPECT_TRUE(plain.findLine("process.submitted phone_id=phone_01 process_id=ctl-watch")) << plain.output();
  EXPECT_TRUE(plain.findLine("item.ended")) << plain.output();
  EXPECT_FALSE(plain.findLine("ctl-other")) << plain.output();
  EXPECT_FALSE(plain.findLine("\x1b[")) << "colors on a pipe";
  plain.kill(SIGINT);
  EXPECT_EQ(plain.waitExit(std::chrono::seconds(20)), 0) << plain.output();

  auto json_argv = ctlArgv({"--json", "watch", "--after", "0", "--kind", "item.started"}, kReadToken);
  AgentProcess raw(PHONEFARMCTL_BINARY, std::vector<std::string>(json_argv.begin() + 1, json_argv.end()), dir_.path());
  ASSERT_TRUE(raw.waitForLine("\"queue_item_id\":\"ctl-watch-q0\"", std::chrono::seconds(20))) << raw.output();
  for (const auto& line : raw.lines()) {
    if (line.empty() || line.front() != '{') continue;
    EXPECT_EQ(json::parse(line).at("kind").as_string(), "item.started") << line;
  }
  raw.kill(SIGINT);
  EXPECT_EQ(raw.waitExit(std::chrono::seconds(20)), 0) << raw.output();

  // --json (a global option) after the subcommand too, with each filter.
  for (const auto& filter : std::vector<std::vector<std::string>>{{"--process", "ctl-watch"},
                                                                  {"--phone", "phone_01", "--kind", "item.ended"}}) {
    std::vector<std::string> args{"watch", "--json", "--after", "0"};
    args.insert(args.end(), filter.begin(), filter.end());
    auto after_argv = ctlArgv(args, kReadToken);
    AgentProcess after(PHONEFARMCTL_BINARY, std::vector<std::string>(after_argv.begin() + 1, after_argv.end()),
                       dir_.path());
    ASSERT_TRUE(after.waitForLine("\"queue_item_id\":\"ctl-watch-q0\"", std::chrono::seconds(20))) << after.output();
    std::size_t printed = 0;
    for (const auto& line : after.lines()) {
      if (line.empty()) continue;
      const auto e = json::parse(line).as_object();  // JSON lines only
      ++printed;
      if (filter.front() == "--process") {
        EXPECT_EQ(e.at("process_id"), "ctl-watch") << line;
      }
      if (filter.front() == "--phone") {
        EXPECT_EQ(e.at("phone_id"), "phone_01") << line;
        EXPECT_EQ(e.at("kind"), "item.ended") << line;
      }
    }
    EXPECT_GE(printed, 1u);
    after.kill(SIGINT);
    EXPECT_EQ(after.waitExit(std::chrono::seconds(20)), 0) << after.output();
  }
}

TEST_F(PhonefarmctlWork, LogsFollowPrintsUntilTheItemEnds) {
  const auto go = outDir() / "go";
  const std::string job = writeJob("slow.sh", "#!/bin/sh\necho first line\nwhile [ ! -e " + go.string() +
                                                  " ]; do sleep 0.02; done\necho second line\n");
  submitWork("ctl-follow", {{job}});
  waitForItem("ctl-follow", 0, "executing");
  auto argv = ctlArgv({"logs", "ctl-follow", "--follow"}, kReadToken);
  AgentProcess follow(PHONEFARMCTL_BINARY, std::vector<std::string>(argv.begin() + 1, argv.end()), dir_.path());
  ASSERT_TRUE(follow.waitForLine("first line", std::chrono::seconds(20))) << follow.output();
  EXPECT_FALSE(follow.findLine("second line")) << follow.output();
  writeFile(go, "", 0644);
  ASSERT_EQ(follow.waitExit(std::chrono::seconds(20)), 0) << follow.output();
  // The exit can be seen before the reader has taken the last bytes from the pipe.
  EXPECT_TRUE(follow.waitForLine("second line")) << follow.output();
  EXPECT_EQ(follow.output(), "first line\nsecond line\n") << follow.output();
}

TEST_F(PhonefarmctlWork, CtrlCStopsFollowingCleanly) {
  const std::string job = writeJob("forever.sh", "#!/bin/sh\necho tick\nexec sleep 600\n");
  submitWork("ctl-int", {{job}});
  waitForItem("ctl-int", 0, "executing");
  auto argv = ctlArgv({"logs", "ctl-int", "--follow"}, kReadToken);
  AgentProcess follow(PHONEFARMCTL_BINARY, std::vector<std::string>(argv.begin() + 1, argv.end()), dir_.path());
  ASSERT_TRUE(follow.waitForLine("tick", std::chrono::seconds(20))) << follow.output();
  follow.kill(SIGINT);
  EXPECT_EQ(follow.waitExit(std::chrono::seconds(10)), 0) << follow.output();
  EXPECT_FALSE(follow.waitForLine("phonefarmctl:")) << follow.output();  // returns at EOF: no error message
  EXPECT_EQ(follow.output(), "tick\n") << follow.output();
  ASSERT_EQ(call("POST", "/processes/ctl-int/cancel", cancelBody("hard"), kOperateToken).status, 200);
  waitForStatus("ctl-int", "cancelled");
}

TEST_F(PhonefarmctlWork, LogsOnATerminalDropControlSequences) {
  const std::string job =
      writeJob("ansi.sh", "#!/bin/sh\nprintf '\\033]0;pwned\\007hello \\033[31mred\\033[0m\\rback\\n'\n");
  submitWork("ctl-ansi", {{job}});
  waitForStatus("ctl-ansi", "succeeded");
  auto piped = ctl({"logs", "ctl-ansi"}, kReadToken);  // the bytes as written
  EXPECT_EQ(piped.out, "\x1b]0;pwned\x07hello \x1b[31mred\x1b[0m\rback\n");
  auto tty = runOnTerminal(ctlArgv({"logs", "ctl-ansi"}, kReadToken), {{"TERM", "xterm"}});
  EXPECT_EQ(tty.exit_code, 0) << tty.out;
  EXPECT_EQ(tty.out, "hello redback\n");
}

// ---------------------------------------------------------------- debug-dump

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

std::string readAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(Phonefarmctl, DebugDumpWritesOneArchiveWithEveryPart) {
  submit("ctl-dump", 1);
  const auto archive = dir_.path() / "dump.tar.gz";
  auto r = ctl({"debug-dump", "-o", archive.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, archive.string() + "\n");

  auto listing = run({"tar", "-tzf", archive.string()});
  ASSERT_EQ(listing.exit_code, 0) << listing.err;
  auto names = lines(listing.out);
  ASSERT_FALSE(names.empty());
  const std::string top = names.front().substr(0, names.front().find('/'));
  EXPECT_TRUE(top.starts_with("phonefarm-debug-")) << listing.out;
  std::sort(names.begin(), names.end());
  std::vector<std::string> expected{top + "/"};
  for (const char* f :
       {"ctl-version.txt", "debug.json", "journal.txt", "metrics.txt", "phones.json", "processes.json"}) {
    expected.push_back(top + "/" + f);
  }
  EXPECT_EQ(names, expected) << listing.out;

  const auto out = dir_.path() / "extracted";
  std::filesystem::create_directories(out);
  auto x = run({"tar", "-xzf", archive.string(), "-C", out.string()});
  ASSERT_EQ(x.exit_code, 0) << x.err;
  const auto debug = json::parse(readAll(out / top / "debug.json"));
  EXPECT_EQ(debug.at("agent").at("version"), PHONEFARM_VERSION);
  EXPECT_EQ(debug.at("config").at("tokens_file"), (dir_.path() / "tokens").c_str());
  const auto processes = json::parse(readAll(out / top / "processes.json"));
  EXPECT_EQ(processes.at("processes").at(0).at("process_id"), "ctl-dump");
  EXPECT_NE(readAll(out / top / "metrics.txt").find("phonefarm_http_requests_total"), std::string::npos);
  EXPECT_FALSE(readAll(out / top / "journal.txt").empty());
  EXPECT_NE(readAll(out / top / "ctl-version.txt").find(std::string("phonefarmctl ") + PHONEFARM_VERSION),
            std::string::npos);
  // No token anywhere in the archive (grep -r exits 1 when nothing matches).
  for (const char* secret : {kReadToken, kOperateToken, kScheduleToken}) {
    auto grep = run({"grep", "-r", "-l", "-F", secret, out.string()});
    EXPECT_EQ(grep.exit_code, 1) << secret << " found in " << grep.out;
  }
}

TEST_F(Phonefarmctl, DebugDumpWithAReadTokenKeepsWhatItCouldGet) {
  const auto cwd = dir_.path() / "cwd";
  std::filesystem::create_directories(cwd);
  // A TMPDIR of this test's own: other tests' dumps (same host, same second,
  // same name) may be in /tmp at the same time.
  const auto tmp = dir_.path() / "tmp";
  std::filesystem::create_directories(tmp);
  ::setenv("TMPDIR", tmp.c_str(), 1);
  auto r = ctl({"debug-dump"}, kReadToken, "", cwd);
  ::unsetenv("TMPDIR");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("the archive lacks 1 part:\n  debug.json (your token lacks the operate scope (403))"),
            std::string::npos)
      << r.err;
  // The default name, in the current directory, printed at the end.
  std::vector<std::filesystem::path> archives;
  for (const auto& e : std::filesystem::directory_iterator(cwd)) archives.push_back(e.path());
  ASSERT_EQ(archives.size(), 1u);
  const std::string name = archives[0].filename().string();
  EXPECT_TRUE(name.starts_with("phonefarm-debug-")) << name;
  EXPECT_TRUE(name.ends_with("Z.tar.gz")) << name;
  EXPECT_EQ(r.out, archives[0].string() + "\n");
  auto listing = run({"tar", "-tzf", archives[0].string()});
  EXPECT_NE(listing.out.find("/debug.json.error.txt\n"), std::string::npos) << listing.out;
  EXPECT_NE(listing.out.find("/phones.json\n"), std::string::npos) << listing.out;
  EXPECT_EQ(listing.out.find("/debug.json\n"), std::string::npos) << listing.out;
  // Nothing is left in the temporary directory.
  for (const auto& e : std::filesystem::directory_iterator(tmp)) ADD_FAILURE() << "left behind: " << e.path();
}

TEST_F(Phonefarmctl, DebugDumpOfAnUnreachableAgentStillWritesTheArchive) {
  const auto archive = dir_.path() / "down.tar.gz";
  auto r = ctl({"debug-dump", "-o", archive.string()}, kOperateToken, "http://127.0.0.1:1");
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_NE(r.err.find("the archive lacks 4 parts"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(archive));
  auto listing = run({"tar", "-tzf", archive.string()});
  EXPECT_NE(listing.out.find("/journal.txt\n"), std::string::npos) << listing.out;
  EXPECT_NE(listing.out.find("/metrics.txt.error.txt\n"), std::string::npos) << listing.out;
}

}  // namespace
}  // namespace phonefarm::testing
