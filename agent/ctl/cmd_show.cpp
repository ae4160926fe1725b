// `phonefarmctl show ID`: one process (GET /processes/{id}) — its items with
// times and exit codes, the effective cancel and the whole audit trail.
#include <iostream>
#include <memory>

#include "agent/ctl/commands.hpp"
#include "agent/ctl/output.hpp"

namespace phonefarm::ctl {
namespace {

namespace json = boost::json;

void run(const Context& ctx, const std::string& id) {
  auto r = ctx.client.call("GET", "/processes/" + percentEncode(id));
  auto v = expectOk(r, {"read", "process " + clean(id) + " not found"}, ctx.opt.json);
  if (ctx.opt.json) return printRaw(r);
  if (!v.is_object()) throw Exit{kExitApi, "the agent's process answer is not an object"};
  const auto& p = v.get_object();
  const bool colors = ctx.opt.colors;
  Table head({"process", cell(p, "process_id")});
  head.add({"status", stateCell(cell(p, "status"))});
  head.add({"phone", cell(p, "phone_id")});
  head.add({"account", cell(p, "account_id")});
  head.add({"capability", cell(p, "capability_request_id")});
  head.add({"requested_by", cell(p, "requested_by")});
  head.add({"created", cell(p, "created_at")});
  head.add({"updated", cell(p, "updated_at")});
  head.print(std::cout, colors);

  std::cout << "\nqueue items:\n";
  // "#" counts from 1, as `logs --item N` does (the API's position is 0-based).
  Table items({"#", "ID", "STATUS", "EXIT", "SIGNAL", "STARTED", "ENDED", "NOTE"});
  if (const auto* list = arrayAt(p, "queue_items")) {
    int n = 0;
    for (const auto& iv : *list) {
      if (!iv.is_object()) continue;
      const auto& i = iv.get_object();
      items.add({std::to_string(++n), cell(i, "queue_item_id"), stateCell(cell(i, "status")), cell(i, "exit_code"),
                 cell(i, "signal"), cell(i, "started_at"), cell(i, "ended_at"), cell(i, "note")});
    }
  }
  items.print(std::cout, colors);

  std::cout << "\ncancel: ";
  if (const auto* cancel = objectAt(p, "cancel")) {
    std::cout << cell(*cancel, "strategy") << " requested " << cell(*cancel, "requested_at") << " by "
              << who(cancel->if_contains("requested_by")) << ", force_at " << cell(*cancel, "force_at") << ", reason \""
              << cell(*cancel, "reason") << "\"\n";
  } else {
    std::cout << "none\n";
  }

  const auto* audit = arrayAt(p, "cancel_audit");
  if (audit != nullptr && !audit->empty()) {
    std::cout << "\naudit trail:\n";
    Table t({"TIME", "ENDPOINT", "ITEM", "STRATEGY", "FORCE-AFTER", "OUTCOME", "TERMINATION", "BY", "REASON"});
    for (const auto& ev : *audit) {
      if (!ev.is_object()) continue;
      const auto& e = ev.get_object();
      t.add({cell(e, "requested_at"), cell(e, "endpoint"), cell(e, "queue_item_id"), cell(e, "strategy"),
             cell(e, "force_after_seconds"), cell(e, "outcome"), cell(e, "termination_status"),
             who(e.if_contains("requested_by")), cell(e, "reason")});
    }
    t.print(std::cout, colors);
  }
}

}  // namespace

Subcommand addShow(CLI::App& app) {
  auto id = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("show", "one process: items, cancel record, audit trail");
  sub->add_option("ID", *id, "process id")->required();
  return {sub, [id](const Context& ctx) { run(ctx, *id); }};
}

}  // namespace phonefarm::ctl
