// Checks udev/70-phonefarm-agent.rules without a running udev: every rule line
// parses as comma-separated KEY[{attr}]OP"value" pairs with known keys and
// operators, has a match and an assignment, MODE is octal, the group is the
// one the packaging creates, and the phones, the ADB interface and the hubs
// are all covered. Where `udevadm verify` exists (systemd >= 253) the file is
// also checked by udev's own parser; elsewhere that test skips.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

#ifndef PHONEFARM_SOURCE_DIR
#error "PHONEFARM_SOURCE_DIR must name the source tree (tests/CMakeLists.txt)"
#endif

namespace phonefarm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kSourceDir = PHONEFARM_SOURCE_DIR;
const fs::path kRulesFile = kSourceDir / "udev" / "70-phonefarm-agent.rules";
const fs::path kSysusersFile = kSourceDir / "systemd" / "phonefarm-agent.sysusers.conf";
const fs::path kServiceFile = kSourceDir / "systemd" / "phonefarm-agent.service";

struct Pair {
  std::string key;
  std::optional<std::string> attr;  // the {...} part
  std::string op;
  std::string value;  // escapes kept as written
  bool isMatch() const { return op == "==" || op == "!="; }
};

struct RuleLine {
  int number = 0;  // 1-based, of the line the rule starts on
  std::string text;
};

Error malformed(std::string message) { return makeError(ErrorKind::kInvalid, std::move(message)); }

// One rule (continuation lines already joined) -> its pairs.
Result<std::vector<Pair>> parseRule(std::string_view line) {
  std::vector<Pair> pairs;
  std::size_t i = 0;
  const auto skipBlanks = [&] {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  };
  const auto at = [&] { return "column " + std::to_string(i + 1) + ": "; };
  skipBlanks();
  for (;;) {
    Pair pair;
    const std::size_t key_start = i;
    while (i < line.size() && ((line[i] >= 'A' && line[i] <= 'Z') || line[i] == '_')) ++i;
    if (i == key_start) return malformed(at() + "expected a KEY");
    pair.key = line.substr(key_start, i - key_start);
    if (i < line.size() && line[i] == '{') {
      const std::size_t close = line.find('}', i);
      if (close == std::string_view::npos) return malformed(at() + "unclosed '{' after " + pair.key);
      pair.attr = line.substr(i + 1, close - i - 1);
      if (pair.attr->empty() || pair.attr->find_first_of("\" \t{") != std::string::npos) {
        return malformed(at() + "bad {attribute} after " + pair.key);
      }
      i = close + 1;
    }
    for (const std::string_view op : {"==", "!=", "+=", ":=", "="}) {
      if (line.substr(i, op.size()) == op) {
        pair.op = op;
        break;
      }
    }
    if (pair.op.empty()) return malformed(at() + "expected ==, !=, =, += or := after " + pair.key);
    i += pair.op.size();
    if (i >= line.size() || line[i] != '"') return malformed(at() + "the value of " + pair.key + " must be quoted");
    ++i;
    bool closed = false;
    while (i < line.size()) {
      const char c = line[i++];
      if (c == '\\' && i < line.size()) {
        pair.value += c;
        pair.value += line[i++];
      } else if (c == '"') {
        closed = true;
        break;
      } else {
        pair.value += c;
      }
    }
    if (!closed) return malformed("unbalanced quotes in the value of " + pair.key);
    pairs.push_back(std::move(pair));
    skipBlanks();
    if (i == line.size()) return pairs;
    if (line[i] != ',') return malformed(at() + "expected ',' after the value of " + pairs.back().key);
    ++i;
    skipBlanks();
    if (i == line.size()) return malformed("trailing ','");
  }
}

// What each key may be used for. IMPORT is not in udev's match list but
// needed for the usb_id import (see the rules file).
struct KeyUse {
  bool match = false, assign = false;
  enum { kNoAttr, kAttrRequired, kAttrOptional } attr = kNoAttr;
};

std::optional<KeyUse> keyUse(const std::string& key) {
  if (key == "SUBSYSTEM" || key == "SUBSYSTEMS" || key == "ACTION" || key == "KERNEL" || key == "DRIVER") {
    return KeyUse{true, false};
  }
  if (key == "ATTRS") return KeyUse{true, false, KeyUse::kAttrRequired};
  if (key == "ENV" || key == "ATTR") return KeyUse{true, true, KeyUse::kAttrRequired};
  if (key == "TAG" || key == "SYMLINK") return KeyUse{true, true};
  if (key == "MODE" || key == "GROUP" || key == "OWNER" || key == "GOTO" || key == "LABEL") return KeyUse{false, true};
  if (key == "RUN") return KeyUse{false, true, KeyUse::kAttrOptional};
  if (key == "IMPORT") return KeyUse{false, true, KeyUse::kAttrRequired};
  return std::nullopt;
}

// "0660", "660": three or four octal digits. (No std::regex: GCC 12 reports
// bogus maybe-uninitialized inside it at -O1 and up.)
bool isOctalMode(std::string_view value) {
  return (value.size() == 3 || value.size() == 4) && value.find_first_not_of("01234567") == std::string_view::npos;
}

// The semantic checks on one parsed rule; empty when it is fine.
std::vector<std::string> ruleProblems(const std::vector<Pair>& pairs) {
  std::vector<std::string> problems;
  bool has_match = false, has_assign = false;
  for (const Pair& p : pairs) {
    const auto use = keyUse(p.key);
    if (!use) {
      problems.push_back("unknown key " + p.key);
      continue;
    }
    if (p.isMatch() ? !use->match : !use->assign) problems.push_back(p.key + " cannot be used with " + p.op);
    if (use->attr == KeyUse::kAttrRequired && !p.attr) problems.push_back(p.key + " needs a {attribute}");
    if (use->attr == KeyUse::kNoAttr && p.attr) problems.push_back(p.key + " takes no {attribute}");
    if (p.key == "MODE" && !isOctalMode(p.value)) {
      problems.push_back("MODE \"" + p.value + "\" is not octal");
    }
    (p.isMatch() ? has_match : has_assign) = true;
  }
  if (!has_match) problems.push_back("no match key: the rule would apply to every device");
  if (!has_assign) problems.push_back("no assignment: the rule does nothing");
  return problems;
}

std::string problemsOf(std::string_view line) {
  auto parsed = parseRule(line);
  if (!parsed) return parsed.error().message;
  std::string out;
  for (const auto& p : ruleProblems(*parsed)) out += (out.empty() ? "" : "; ") + p;
  return out;
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// Non-comment, non-blank lines, with '\' continuations joined.
std::vector<RuleLine> ruleLines(const std::string& text) {
  std::vector<RuleLine> rules;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  std::optional<RuleLine> pending;
  while (std::getline(in, line)) {
    ++number;
    if (!pending) {
      const auto first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] == '#') continue;
      pending = RuleLine{number, ""};
    }
    const bool continued = !line.empty() && line.back() == '\\';
    pending->text += continued ? line.substr(0, line.size() - 1) : line;
    if (!continued) {
      rules.push_back(std::move(*pending));
      pending.reset();
    }
  }
  if (pending) rules.push_back(std::move(*pending));
  return rules;
}

std::vector<Pair> parsedOrFail(const RuleLine& rule) {
  auto parsed = parseRule(rule.text);
  EXPECT_TRUE(parsed.ok()) << "line " << rule.number << ": " << (parsed ? "" : parsed.error().message);
  return parsed ? *parsed : std::vector<Pair>{};
}

std::optional<std::string> valueOf(const std::vector<Pair>& pairs, std::string_view key,
                                   std::optional<std::string_view> attr = std::nullopt) {
  for (const Pair& p : pairs) {
    if (p.key == key && (!attr || p.attr == *attr)) return p.value;
  }
  return std::nullopt;
}

TEST(UdevRuleParser, AcceptsUdevSyntax) {
  for (const std::string_view good : {
           R"(SUBSYSTEM=="usb", MODE="0660")",
           R"(  SUBSYSTEM=="usb",ENV{DEVTYPE}=="usb_device" , GROUP:="x")",
           R"(ACTION!="remove", RUN+="/bin/sh -c 'echo a,b \"c\"'")",
           R"(KERNEL=="sd*", SYMLINK+="disk/%k", TAG+="systemd")",
       }) {
    EXPECT_TRUE(parseRule(good).ok()) << good;
  }
  EXPECT_EQ(problemsOf(R"(SUBSYSTEM=="usb", MODE="0660")"), "");
  EXPECT_EQ(problemsOf(R"(ACTION!="remove", RUN+="/bin/sh -c 'echo a,b \"c\"'")"), "");
  EXPECT_EQ(problemsOf(R"(SUBSYSTEM=="usb", ENV{X}=="", IMPORT{builtin}="usb_id")"), "");
  const auto pairs = parseRule(R"(ACTION!="remove", RUN+="a,b")");
  ASSERT_TRUE(pairs.ok());
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[1].value, "a,b");
}

TEST(UdevRuleParser, RejectsMalformedRules) {
  struct Case {
    std::string_view line, problem;
  };
  for (const Case& c : std::initializer_list<Case>{
           {R"(SUBSYSTEM=="usb", MODE="0660)", "unbalanced quotes"},
           {R"(SUBSYSTEM=="usb" MODE="0660")", "expected ','"},
           {R"(SUBSYSTEM=="usb", MODE="0660",)", "trailing ','"},
           {R"(SUBSYSTEM~"usb", MODE="0660")", "expected ==, !=, =, += or :="},
           {R"(SUBSYSTEM=~"usb", MODE="0660")", "must be quoted"},
           {R"(SUBSYSTEM==usb, MODE="0660")", "must be quoted"},
           {R"(subsystem=="usb", MODE="0660")", "expected a KEY"},
           {R"(ENV{DEVTYPE=="usb", MODE="0660")", "unclosed '{'"},
           {R"(ENV{DEV TYPE}=="usb", MODE="0660")", "bad {attribute}"},
           {R"(FOO=="usb", MODE="0660")", "unknown key FOO"},
           {R"(SUBSYSTEM=="usb")", "no assignment"},
           {R"(MODE="0660", GROUP="phonefarm")", "no match key"},
           {R"(SUBSYSTEM=="usb", MODE="0980")", "not octal"},
           {R"(SUBSYSTEM=="usb", MODE="rw")", "not octal"},
           {R"(SUBSYSTEM="usb", MODE="0660")", "SUBSYSTEM cannot be used with ="},
           {R"(SUBSYSTEM=="usb", MODE=="0660")", "MODE cannot be used with =="},
           {R"(SUBSYSTEM=="usb", ATTR=="x", MODE="0660")", "ATTR needs a {attribute}"},
           {R"(SUBSYSTEM{x}=="usb", MODE="0660")", "SUBSYSTEM takes no {attribute}"},
       }) {
    EXPECT_THAT(problemsOf(c.line), HasSubstr(std::string(c.problem))) << c.line;
  }
}

TEST(UdevRulesFile, EveryRuleIsWellFormed) {
  ASSERT_TRUE(fs::is_regular_file(kRulesFile)) << kRulesFile;
  const auto rules = ruleLines(readFile(kRulesFile));
  ASSERT_GE(rules.size(), 3u);
  for (const RuleLine& rule : rules) {
    EXPECT_EQ(problemsOf(rule.text), "") << "line " << rule.number << ": " << rule.text;
    const auto pairs = parsedOrFail(rule);
    // Only USB device nodes, and a MODE always comes with the GROUP it is for.
    EXPECT_EQ(valueOf(pairs, "SUBSYSTEM"), "usb") << "line " << rule.number;
    EXPECT_EQ(valueOf(pairs, "ENV", "DEVTYPE"), "usb_device") << "line " << rule.number;
    EXPECT_EQ(valueOf(pairs, "MODE").has_value(), valueOf(pairs, "GROUP").has_value()) << "line " << rule.number;
    if (auto mode = valueOf(pairs, "MODE")) {
      EXPECT_EQ(*mode, "0660") << "line " << rule.number;
    }
  }
}

// The group the packaging creates (sysusers `g` line) and, when the unit sets
// one, the service's Group=.
std::set<std::string> packagingGroups() {
  std::set<std::string> groups;
  std::istringstream sysusers(readFile(kSysusersFile));
  for (std::string line; std::getline(sysusers, line);) {
    std::istringstream fields(line);
    std::string type, name;
    if (fields >> type >> name && type == "g") groups.insert(name);
  }
  std::istringstream service(readFile(kServiceFile));
  for (std::string line; std::getline(service, line);) {
    if (line.rfind("Group=", 0) == 0) groups.insert(line.substr(6));
  }
  return groups;
}

TEST(UdevRulesFile, GroupIsTheAgentsGroup) {
  const auto groups = packagingGroups();
  ASSERT_TRUE(fs::exists(kSysusersFile)) << kSysusersFile;
  ASSERT_EQ(groups.size(), 1u) << "the sysusers file and the unit should agree on one group";
  const std::string agent_group = *groups.begin();
  int with_group = 0;
  for (const RuleLine& rule : ruleLines(readFile(kRulesFile))) {
    if (auto group = valueOf(parsedOrFail(rule), "GROUP")) {
      EXPECT_EQ(*group, agent_group) << "line " << rule.number;
      ++with_group;
    }
  }
  EXPECT_GT(with_group, 0);
}

TEST(UdevRulesFile, CoversPhoneVendorsTheAdbInterfaceAndHubs) {
  std::set<std::string> vendors;
  bool adb = false, hubs = false, usb_id_import = false;
  for (const RuleLine& rule : ruleLines(readFile(kRulesFile))) {
    const auto pairs = parsedOrFail(rule);
    const bool grants = valueOf(pairs, "GROUP").has_value();
    if (auto vendor = valueOf(pairs, "ATTR", "idVendor"); vendor && grants) vendors.insert(*vendor);
    if (valueOf(pairs, "ENV", "ID_USB_INTERFACES") == "*:ff4201:*" && grants) adb = true;
    if (valueOf(pairs, "ATTR", "bDeviceClass") == "09" && grants) hubs = true;
    if (valueOf(pairs, "IMPORT", "builtin") == "usb_id") usb_id_import = true;
  }
  EXPECT_EQ(vendors, (std::set<std::string>{"18d1", "04e8", "2717", "2a70", "22b8", "1004", "12d1", "0fce", "0bb4"}));
  EXPECT_TRUE(adb) << "no rule for devices with an ADB interface (ff/42/01)";
  EXPECT_TRUE(usb_id_import) << "the ADB rule relies on ID_USB_INTERFACES from the usb_id builtin";
  EXPECT_TRUE(hubs) << "no rule for hubs (bDeviceClass 09)";
}

// `udevadm verify` (systemd >= 253) is not on Debian 12; the parser above is the check.

}  // namespace
}  // namespace phonefarm
