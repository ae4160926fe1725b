// `phonefarmctl hubs`: the rack's USB hubs as a table (GET /hubs) — the
// phones on each, its state, and its last hub event (phones of the hub that
// dropped together, and what the agent did about it).
#include <iostream>

#include "agent/ctl/commands.hpp"
#include "agent/ctl/output.hpp"

namespace phonefarm::ctl {
namespace {

namespace json = boost::json;

void run(const Context& ctx) {
  auto r = ctx.client.call("GET", "/hubs");
  auto v = expectOk(r, {}, ctx.opt.json);
  if (ctx.opt.json) return printRaw(r);
  const json::array* hubs = v.is_object() ? arrayAt(v.get_object(), "hubs") : nullptr;
  if (hubs == nullptr) throw Exit{kExitApi, "the agent's /hubs answer has no \"hubs\" list"};
  Table t({"HUB", "PHONES", "STATE", "LAST-EVENT"});
  for (const auto& hv : *hubs) {
    if (!hv.is_object()) continue;
    const auto& h = hv.get_object();
    std::string phones;
    if (const json::array* list = arrayAt(h, "phones")) {
      for (const auto& p : *list) phones += (phones.empty() ? "" : ",") + cell(&p);
    }
    std::string last = "-";
    if (const auto* e = objectAt(h, "last_event")) {
      last = cell(*e, "at") + " " + cell(*e, "action") + ": " + cell(*e, "detail");
    }
    t.add({cell(h, "hub_id"), phones.empty() ? "-" : phones, stateCell(cell(h, "state")), last});
  }
  t.print(std::cout, ctx.opt.colors);
}

}  // namespace

Subcommand addHubs(CLI::App& app) {
  auto* sub = app.add_subcommand("hubs", "the rack's USB hubs: their phones, state and last hub event");
  return {sub, [](const Context& ctx) { run(ctx); }};
}

}  // namespace phonefarm::ctl
