// `phonefarmctl reset PHONE --reason R`: POST /phones/{id}/reset, the
// ADB/USB reset ladder; prints the reset id and its status.
#include <boost/json.hpp>
#include <iostream>
#include <memory>

#include "agent/ctl/commands.hpp"
#include "agent/ctl/output.hpp"

namespace phonefarm::ctl {
namespace {

namespace json = boost::json;

struct ResetArgs {
  std::string phone;
  std::string reason;
};

void run(const Context& ctx, const ResetArgs& a) {
  json::object body{{"reason", a.reason}, {"requested_by", requestedBy()}};
  auto r = ctx.client.call("POST", "/phones/" + percentEncode(a.phone) + "/reset", json::serialize(body));
  auto v = expectOk(r, {"operate", "phone " + clean(a.phone) + " not found"}, ctx.opt.json);
  if (ctx.opt.json) return printRaw(r);
  if (!v.is_object()) throw Exit{kExitApi, "the agent's reset answer is not an object"};
  const auto& o = v.get_object();
  std::cout << "reset " << cell(o, "reset_id") << " of " << cell(o, "phone_id") << ": " << cell(o, "status") << '\n';
}

}  // namespace

Subcommand addReset(CLI::App& app) {
  auto a = std::make_shared<ResetArgs>();
  auto* sub = app.add_subcommand("reset", "reset a phone's ADB/USB session");
  sub->add_option("PHONE", a->phone, "phone id")->required();
  sub->add_option("--reason", a->reason, "why (recorded)")->required()->check(nonEmpty());
  return {sub, [a](const Context& ctx) { run(ctx, *a); }};
}

}  // namespace phonefarm::ctl
