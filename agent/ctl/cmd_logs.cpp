// `phonefarmctl logs ID [--item N] [--stream stdout|stderr] [--follow]`: a
// queue item's output, read through GET
// /processes/{id}/items/{item}/logs?stream=&offset= in chunks (the agent
// sends at most 1 MiB per answer and says where the next one starts, how big
// the log is now, and whether more can come). Without --follow it prints
// what is there and exits; with --follow it polls every 500 ms until the
// item is terminal and everything is read. Ctrl-C stops it cleanly (exit 0).
// The bytes go to stdout as written, except on a terminal (TerminalFilter).
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <csignal>
#include <ctime>
#include <iostream>
#include <memory>

#include "agent/ctl/commands.hpp"
#include "agent/ctl/log_chunk.hpp"
#include "agent/ctl/output.hpp"
#include "agent/ctl/terminal_filter.hpp"

namespace phonefarm::ctl {
namespace {

namespace json = boost::json;

constexpr auto kPollInterval = std::chrono::milliseconds(500);

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void onInterrupt(int) { g_interrupted = 1; }

struct LogsArgs {
  std::string id;
  int item = 0;  // 1-based position; 0 = the executing one, else the last started
  std::string stream = "stdout";
  bool follow = false;
};

// The item to show: --item N, or the executing one, else the last one that
// started, else the first (it has not run yet).
std::string pickItem(const json::object& process, const LogsArgs& a) {
  const json::array* items = arrayAt(process, "queue_items");
  if (items == nullptr || items->empty()) throw Exit{kExitApi, "process " + clean(a.id) + " has no queue items"};
  if (a.item > 0) {
    if (static_cast<std::size_t>(a.item) > items->size()) {
      throw Exit{kExitApi, "process " + clean(a.id) + " has " + plural(items->size(), "item") + ", not " +
                               std::to_string(a.item)};
    }
    const auto& item = items->at(static_cast<std::size_t>(a.item - 1));
    return item.is_object() ? cell(item.get_object(), "queue_item_id") : "-";
  }
  const json::object* chosen = nullptr;
  for (const auto& iv : *items) {
    if (!iv.is_object()) continue;
    const auto& i = iv.get_object();
    if (cell(i, "status") == "executing") return cell(i, "queue_item_id");
    const json::value* started = i.if_contains("started_at");
    if (started != nullptr && !started->is_null()) chosen = &i;
  }
  if (chosen == nullptr && items->front().is_object()) chosen = &items->front().get_object();
  if (chosen == nullptr) throw Exit{kExitApi, "the agent's process answer has no usable queue items"};
  return cell(*chosen, "queue_item_id");
}

// Sleeps for the poll interval; returns early on Ctrl-C.
void pause() {
  timespec ts{0, std::chrono::duration_cast<std::chrono::nanoseconds>(kPollInterval).count()};
  while (g_interrupted == 0 && ::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void run(const Context& ctx, const LogsArgs& a) {
  const ErrorContext not_found{"read", "process " + clean(a.id) + " not found"};
  auto pr = ctx.client.call("GET", "/processes/" + percentEncode(a.id));
  const auto process = expectOk(pr, not_found, false);
  if (!process.is_object()) throw Exit{kExitApi, "the agent's process answer is not an object"};
  const std::string item = pickItem(process.get_object(), a);

  struct sigaction sa {};
  sa.sa_handler = onInterrupt;  // no SA_RESTART: the poll sleep ends at once
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  const bool terminal = ::isatty(STDOUT_FILENO) == 1;
  TerminalFilter filter;
  const std::string base = "/processes/" + percentEncode(a.id) + "/items/" + percentEncode(item) +
                           "/logs?stream=" + percentEncode(a.stream) + "&offset=";
  std::uint64_t offset = 0;
  while (g_interrupted == 0) {
    HttpResponse r;
    try {
      r = ctx.client.call("GET", base + std::to_string(offset));
    } catch (const Exit&) {
      if (g_interrupted != 0) break;
      throw;
    }
    if (r.status != 200) {
      throw apiError(r, {"read", "process " + clean(a.id) + " or its item " + clean(item) + " not found"});
    }
    const LogChunk chunk = readLogChunk(r, offset);
    if (terminal) {
      std::cout << filter.filter(r.body);
    } else {
      std::cout.write(r.body.data(), static_cast<std::streamsize>(r.body.size()));
    }
    std::cout.flush();
    offset = chunk.next_offset;
    if (chunk.capped()) continue;
    if (!a.follow || !chunk.more) break;
    pause();
  }
}

}  // namespace

Subcommand addLogs(CLI::App& app) {
  auto a = std::make_shared<LogsArgs>();
  auto* sub = app.add_subcommand("logs", "a queue item's stdout or stderr (as the job wrote it)");
  sub->add_option("ID", a->id, "process id")->required();
  sub->add_option("--item", a->item,
                  "the item's position, 1 = first (default: the executing item, else the last "
                  "one that started)")
      ->check(CLI::Range(1, 100));
  sub->add_option("--stream", a->stream, "stdout | stderr (default stdout)")
      ->check(CLI::IsMember({"stdout", "stderr"}));
  sub->add_flag("-f,--follow", a->follow, "keep printing until the item has ended (Ctrl-C stops)");
  return {sub, [a](const Context& ctx) { run(ctx, *a); }};
}

}  // namespace phonefarm::ctl
