// `phonefarmctl watch [--process ID] [--phone ID] [--kind K] [--after SEQ]`: the agent's
// events as they happen, one line each (time, seq, kind, ids, what changed),
// colored on a terminal; with --json each event's JSON as the agent sent it.
// It long-polls GET /events (?wait=, ?after=): the blocking one-request
// client needs nothing else, and a dropped connection or an agent restart
// loses nothing — the next poll resumes after the last seq printed. Ctrl-C
// stops it cleanly (exit 0) when the current poll (at most 2 s) returns.
#include <boost/json.hpp>
#include <csignal>
#include <iostream>
#include <memory>
#include <optional>

#include "agent/ctl/commands.hpp"
#include "agent/ctl/output.hpp"
#include "agent/ctl/url.hpp"

namespace phonefarm::ctl {
namespace {

namespace json = boost::json;

// Short polls: the blocking client cannot be interrupted mid-request, so
// Ctrl-C takes effect when the current poll returns.
constexpr long kMaxWaitSeconds = 2;

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void onWatchInterrupt(int) { g_interrupted = 1; }

struct WatchArgs {
  std::string process_id;
  std::string phone_id;
  std::string kind;
  std::int64_t after = -1;  // -1: from now on
};

// The ids and the payload's words, "key=value" each.
std::string describe(const json::object& e) {
  std::string out;
  auto add = [&out](std::string_view key, const json::value& v) {
    if (v.is_null()) return;
    out += ' ';
    out += key;
    out += '=';
    out += v.is_string() ? clean(v.get_string()) : clean(json::serialize(v));
  };
  for (const char* key : {"phone_id", "process_id", "queue_item_id", "reset_id"}) {
    if (const auto* v = e.if_contains(key)) add(key, *v);
  }
  if (const json::object* payload = objectAt(e, "payload")) {
    for (const auto& [key, v] : *payload) add(key, v);
  }
  return out;
}

// The word of the event that gets the state color.
std::string_view headline(const json::object& e) {
  const json::object* payload = objectAt(e, "payload");
  if (payload == nullptr) return {};
  for (const char* key : {"status", "health", "adb_state"}) {
    if (const auto* v = payload->if_contains(key); v != nullptr && v->is_string()) return v->get_string();
  }
  return {};
}

void printEvent(const json::object& e, bool colors) {
  const std::string time = cell(e, "time");
  const std::string kind = cell(e, "kind");
  std::cout << paint(time.substr(std::min<std::size_t>(11, time.size()), 12), kBold, colors) << ' ' << cell(e, "seq")
            << ' ' << paint(clean(kind), stateColor(headline(e)), colors) << describe(e) << '\n';
}

void run(const Context& ctx, const WatchArgs& a) {
  struct sigaction sa {};
  sa.sa_handler = onWatchInterrupt;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  // The poll must end before the client's own deadline.
  const long timeout_s = static_cast<long>(ctx.client.timeout().count() / 1000);
  const long wait = std::clamp(timeout_s - 1, 1L, kMaxWaitSeconds);
  std::string filters;
  if (!a.process_id.empty()) filters += "&process_id=" + percentEncode(a.process_id);
  if (!a.phone_id.empty()) filters += "&phone_id=" + percentEncode(a.phone_id);
  if (!a.kind.empty()) filters += "&kind=" + percentEncode(a.kind);
  std::optional<std::int64_t> after;  // none: from now on
  if (a.after >= 0) after = a.after;
  while (g_interrupted == 0) {
    const std::string target =
        "/events?wait=" + std::to_string(wait) + (after ? "&after=" + std::to_string(*after) : std::string()) + filters;
    HttpResponse r;
    try {
      r = ctx.client.call("GET", target);
    } catch (const Exit&) {
      if (g_interrupted != 0) break;
      throw;
    }
    const json::value page = expectOk(r, {"read", ""}, ctx.opt.json);
    const json::object* body = page.if_object();
    const json::array* events = body ? arrayAt(*body, "events") : nullptr;
    const json::value* next = body ? body->if_contains("next") : nullptr;
    if (events == nullptr || next == nullptr || !next->is_int64()) {
      throw Exit{kExitApi, "the agent's events answer is not a page of events"};
    }
    if (const json::object* reset = objectAt(*body, "reset")) {
      std::cerr << "phonefarmctl: events before seq " << cell(*reset, "oldest")
                << " were dropped by the agent's retention\n";
    }
    for (const auto& ev : *events) {
      if (!ev.is_object()) continue;
      if (ctx.opt.json) {
        std::cout << json::serialize(ev) << '\n';
      } else {
        printEvent(ev.get_object(), ctx.opt.colors);
      }
    }
    std::cout.flush();
    after = next->get_int64();
  }
}

}  // namespace

Subcommand addWatch(CLI::App& app) {
  auto a = std::make_shared<WatchArgs>();
  auto* sub = app.add_subcommand("watch", "the agent's events as they happen, one line each (Ctrl-C stops)");
  sub->add_option("--process", a->process_id, "only this process's events")->check(nonEmpty());
  sub->add_option("--phone", a->phone_id, "only this phone's events")->check(nonEmpty());
  sub->add_option("--kind", a->kind, "only these kinds, comma-separated (e.g. process.status,item.ended)")
      ->check(nonEmpty());
  sub->add_option("--after", a->after, "start after this seq (0: every event kept; default: from now on)")
      ->check(CLI::NonNegativeNumber);
  return {sub, [a](const Context& ctx) { run(ctx, *a); }};
}

}  // namespace phonefarm::ctl
