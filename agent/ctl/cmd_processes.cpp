// `phonefarmctl processes`: processes newest first (GET /processes), with
// the agent's filters and paging; status colored.
#include <iostream>
#include <memory>

#include "agent/ctl/commands.hpp"
#include "agent/ctl/output.hpp"

namespace phonefarm::ctl {
namespace {

namespace json = boost::json;

struct ProcessesArgs {
  std::string status;
  std::string phone;
  int limit = 0;
  std::string cursor;
};

void run(const Context& ctx, const ProcessesArgs& a) {
  std::string query;
  auto add = [&query](const char* k, const std::string& v) {
    if (v.empty()) return;
    query += (query.empty() ? "?" : "&") + std::string(k) + "=" + percentEncode(v);
  };
  add("status", a.status);
  add("phone_id", a.phone);
  add("limit", a.limit > 0 ? std::to_string(a.limit) : "");
  add("cursor", a.cursor);
  auto r = ctx.client.call("GET", "/processes" + query);
  auto v = expectOk(r, {}, ctx.opt.json);
  if (ctx.opt.json) return printRaw(r);
  const json::array* list = v.is_object() ? arrayAt(v.get_object(), "processes") : nullptr;
  if (list == nullptr) throw Exit{kExitApi, "the agent's /processes answer has no \"processes\" list"};
  Table t({"ID", "STATUS", "PHONE", "ACCOUNT", "ITEMS", "CREATED"});
  for (const auto& pv : *list) {
    if (!pv.is_object()) continue;
    const auto& p = pv.get_object();
    const auto* items = arrayAt(p, "queue_items");
    t.add({cell(p, "process_id"), stateCell(cell(p, "status")), cell(p, "phone_id"), cell(p, "account_id"),
           items ? std::to_string(items->size()) : "-", cell(p, "created_at")});
  }
  t.print(std::cout, ctx.opt.colors);
  const json::value* next = v.get_object().if_contains("next_cursor");
  if (next != nullptr && next->is_string()) std::cout << "(more: --cursor " << cell(next) << ")\n";
}

}  // namespace

Subcommand addProcesses(CLI::App& app) {
  auto a = std::make_shared<ProcessesArgs>();
  auto* sub = app.add_subcommand("processes", "list processes, newest first");
  sub->add_option("--status", a->status, "only this status")
      ->check(CLI::IsMember({"queued", "running", "cancelling", "succeeded", "failed", "cancelled"}));
  sub->add_option("--phone", a->phone, "only this phone id");
  sub->add_option("--limit", a->limit, "at most N (1-500; agent default 100)")->check(CLI::Range(1, 500));
  sub->add_option("--cursor", a->cursor, "continue after a previous page");
  return {sub, [a](const Context& ctx) { run(ctx, *a); }};
}

}  // namespace phonefarm::ctl
