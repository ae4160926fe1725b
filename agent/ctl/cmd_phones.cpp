// `phonefarmctl phones [--all]`: the rack as a table (GET /phones) — adb
// state, health (colored), current work, queue depth, last reset; with --all
// also the devices the adb server sees that no [[phones]] entry names (what a
// technician needs to fill in the config).
#include <iostream>
#include <memory>

#include "agent/ctl/commands.hpp"
#include "agent/ctl/output.hpp"

namespace phonefarm::ctl {
namespace {

namespace json = boost::json;

void printUnassigned(const json::object& body, const Context& ctx) {
  const json::array* devices = arrayAt(body, "unassigned");
  if (devices == nullptr) return;
  std::cout << "\nunassigned devices (no [[phones]] entry):\n";
  Table t({"SERIAL", "ADB", "USB-PORT", "MODEL"});
  for (const auto& dv : *devices) {
    if (!dv.is_object()) continue;
    const auto& d = dv.get_object();
    const json::object* props = objectAt(d, "properties");
    t.add({cell(d, "serial"), stateCell(cell(d, "adb_state")), props ? cell(*props, "usb") : "-",
           props ? cell(*props, "model") : "-"});
  }
  t.print(std::cout, ctx.opt.colors);
}

void run(const Context& ctx, bool all) {
  auto r = ctx.client.call("GET", all ? "/phones?all=1" : "/phones");
  auto v = expectOk(r, {}, ctx.opt.json);
  if (ctx.opt.json) return printRaw(r);
  Table t({"ID", "SERIAL", "ADB", "HEALTH", "CURRENT", "QUEUE", "LAST-RESET"});
  const json::array* phones = v.is_object() ? arrayAt(v.get_object(), "phones") : nullptr;
  if (phones == nullptr) throw Exit{kExitApi, "the agent's /phones answer has no \"phones\" list"};
  for (const auto& pv : *phones) {
    if (!pv.is_object()) continue;
    const auto& p = pv.get_object();
    std::string current = "-";
    if (const auto* cur = objectAt(p, "current")) current = cell(*cur, "process_id");
    std::string last = "-";
    if (const auto* lr = objectAt(p, "last_reset")) {
      const json::value* when = lr->if_contains("ended_at");
      if (when == nullptr || when->is_null()) when = lr->if_contains("requested_at");
      last = cell(*lr, "status") + " " + cell(when) + " (" + cell(*lr, "trigger") + ")";
    }
    t.add({cell(p, "phone_id"), cell(p, "serial"), stateCell(cell(p, "adb_state")), stateCell(cell(p, "health")),
           current, cell(p, "queue_depth"), last});
  }
  t.print(std::cout, ctx.opt.colors);
  if (all) printUnassigned(v.get_object(), ctx);
}

}  // namespace

Subcommand addPhones(CLI::App& app) {
  auto all = std::make_shared<bool>(false);
  auto* sub = app.add_subcommand("phones", "the rack's phones: adb state, health, current work, last reset");
  sub->add_flag("--all", *all, "also list the devices the adb server sees that no [[phones]] entry names");
  return {sub, [all](const Context& ctx) { run(ctx, *all); }};
}

}  // namespace phonefarm::ctl
