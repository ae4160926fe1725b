// `phonefarmctl cancel ID --reason R`: POST /processes/{id}/cancel, and the
// agent's answer in words ("cancel_requested: 2 pending items cancelled;
// kill issued to container <id> (cgroup); process now cancelling").
#include <pwd.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <climits>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "agent/ctl/commands.hpp"
#include "agent/ctl/output.hpp"

namespace phonefarm::ctl {
namespace {

namespace json = boost::json;

std::string whoAmI() {
  if (const char* u = std::getenv("SUDO_USER"); u != nullptr && *u != '\0') return u;
  if (passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_name != nullptr) return pw->pw_name;
  if (const char* u = std::getenv("USER"); u != nullptr) return u;
  return "unknown";
}

std::string describeTermination(const json::object& r, const json::object& t) {
  const std::string ts = cell(t, "status");
  std::string active = "-";
  if (const auto* target = objectAt(r, "active_target")) active = cell(*target, "queue_item_id");
  if (ts == "not_needed") return "nothing was executing";
  if (ts == "requested") return "stop notice sent to item " + active;
  if (ts == "scheduled") return "stop notice sent to item " + active + "; force kill at " + cell(t, "force_at");
  if (ts == "issued") {
    std::string what = "kill issued";
    if (const auto* ctr = objectAt(t, "container")) {
      what += " to container " + cell(*ctr, "id") + " (" + cell(*ctr, "runtime") + ")";
    }
    return what;
  }
  if (ts == "failed") return "kill could not be issued: " + cell(t, "error");
  return "termination " + ts;
}

// The cancel answer in words.
std::string describeCancel(const json::object& r) {
  const std::string status = cell(r, "status");
  const json::object* process = objectAt(r, "process");
  const std::string pstatus = process ? cell(*process, "status") : "-";
  if (status == "ignored_terminal") return "ignored: process already " + pstatus;
  std::vector<std::string> parts;
  const auto* cancelled = arrayAt(r, "cancelled_queue_item_ids");
  const std::size_t n = cancelled ? cancelled->size() : 0;
  parts.push_back(n == 0 ? "no pending items cancelled" : plural(n, "pending item") + " cancelled");
  if (const auto* t = objectAt(r, "termination")) {
    parts.push_back(describeTermination(r, *t));
    if (const auto* reset = objectAt(*t, "phone_reset")) {
      parts.push_back("phone reset " + cell(*reset, "reset_id") + " " + cell(*reset, "status"));
    }
  }
  parts.push_back("process now " + pstatus);
  std::string out = clean(status) + ": ";
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
  return out;
}

struct CancelArgs {
  std::string id;
  std::string reason;
  std::string strategy = "soft_then_force";
  long long force_after = 0;
  CLI::Option* force_opt = nullptr;
};

void run(const Context& ctx, const CancelArgs& a) {
  json::object body{{"reason", a.reason}, {"strategy", a.strategy}, {"requested_by", requestedBy()}};
  if (a.force_opt->count() > 0) body["force_after_seconds"] = a.force_after;
  auto r = ctx.client.call("POST", "/processes/" + percentEncode(a.id) + "/cancel", json::serialize(body));
  auto v = expectOk(r, {"operate", "process " + clean(a.id) + " not found"}, ctx.opt.json);
  if (ctx.opt.json) return printRaw(r);
  if (!v.is_object()) throw Exit{kExitApi, "the agent's cancel answer is not an object"};
  std::cout << describeCancel(v.get_object()) << '\n';
}

}  // namespace

json::object requestedBy() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return json::object{{"system", "phonefarmctl"}, {"user", whoAmI()}, {"metadata", json::object{{"host", host}}}};
}

const CLI::Validator& nonEmpty() {
  static const CLI::Validator v(
      [](std::string& s) { return s.empty() ? std::string("the reason must not be empty") : std::string(); }, "TEXT");
  return v;
}

Subcommand addCancel(CLI::App& app) {
  auto a = std::make_shared<CancelArgs>();
  auto* sub = app.add_subcommand("cancel", "cancel a process (POST /processes/{id}/cancel)");
  sub->add_option("ID", a->id, "process id")->required();
  sub->add_option("--reason", a->reason, "why (recorded in the audit trail)")->required()->check(nonEmpty());
  sub->add_option("--strategy", a->strategy, "soft | hard | soft_then_force (default soft_then_force)")
      ->check(CLI::IsMember({"soft", "hard", "soft_then_force"}));
  a->force_opt = sub->add_option("--force-after", a->force_after, "seconds before soft_then_force kills (default 10)")
                     ->check(CLI::Range(0LL, static_cast<long long>(INT_MAX)));
  return {sub, [a](const Context& ctx) { run(ctx, *a); }};
}

}  // namespace phonefarm::ctl
