// phonefarmctl: the technician's command-line tool. It talks HTTP/1.1 to the
// local phonefarm-agent (API.md) and prints what it answers as aligned tables
// or, with --json, as the agent sent it.
#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "agent/ctl/http_client.hpp"
#include "common/config/config.hpp"

namespace {

namespace json = boost::json;
using phonefarm::ctl::HttpResponse;
using phonefarm::ctl::Url;

constexpr int kExitOk = 0;
constexpr int kExitApi = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

constexpr const char* kDefaultConfig = "/etc/phonefarm-agent/agent.toml";
constexpr const char* kDefaultTokenFile = "/etc/phonefarm-agent/ctl-token";
constexpr const char* kFallbackUrl = "http://127.0.0.1:8787";

// Ends the command with an exit code and a message for stderr.
struct Exit {
  int code;
  std::string message;
};

// Removes control characters so that agent-supplied text cannot drive the terminal.
std::string clean(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out;
}

// A JSON value as one table cell: strings as is, null as "-".
std::string cell(const json::value* v) {
  if (v == nullptr || v->is_null()) return "-";
  if (v->is_string()) return clean(v->get_string());
  return clean(json::serialize(*v));
}

std::string cell(const json::object& o, std::string_view key) { return cell(o.if_contains(key)); }

// requested_by in short: its user, else its system, else the JSON.
std::string who(const json::value* v) {
  if (v != nullptr && v->is_object()) {
    for (const char* key : {"user", "system"}) {
      const json::value* s = v->get_object().if_contains(key);
      if (s != nullptr && s->is_string() && !s->get_string().empty()) return clean(s->get_string());
    }
  }
  return cell(v);
}

const json::object* objectAt(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_object() ? &v->get_object() : nullptr;
}

const json::array* arrayAt(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_array() ? &v->get_array() : nullptr;
}

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) {
    row.resize(rows_.front().size());
    rows_.push_back(std::move(row));
  }
  void print(std::ostream& out) const {
    std::vector<std::size_t> width(rows_.front().size(), 0);
    for (const auto& row : rows_) {
      for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    for (const auto& row : rows_) {
      std::string line;
      for (std::size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out << line << '\n';
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

struct Options {
  std::string url;
  std::string token_file;
  bool json = false;
  double timeout_seconds = 10;
};

class Client {
 public:
  Client(Url url, std::string url_text, std::string token, std::chrono::milliseconds timeout)
      : url_(std::move(url)), url_text_(std::move(url_text)), token_(std::move(token)), timeout_(timeout) {}

  // Performs the request; throws Exit{3} when the agent cannot be reached.
  HttpResponse call(std::string_view method, const std::string& target, const std::string& body = "") const {
    phonefarm::ctl::HeaderList headers{{"Authorization", "Bearer " + token_}};
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    try {
      return phonefarm::ctl::httpRequest(url_, method, target, body, headers, timeout_);
    } catch (const phonefarm::ctl::TransportError& e) {
      throw Exit{kExitUnreachable, "cannot reach the agent at " + url_text_ + ": " + e.what()};
    }
  }

 private:
  Url url_;
  std::string url_text_;
  std::string token_;
  std::chrono::milliseconds timeout_;
};

// What a failed request means for the technician, as in the --help footer.
struct ErrorContext {
  std::string scope = "read";  // the scope the request needs
  std::string not_found;       // e.g. "process p-1 not found"; "" = the agent's detail
};

std::optional<json::value> parseJson(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return std::nullopt;
  return v;
}

std::string detailText(const json::value& detail) {
  if (detail.is_string()) return clean(detail.get_string());
  return clean(json::serialize(detail));
}

// 422 detail entry -> "field: message".
std::string validationLine(const json::value& entry) {
  if (!entry.is_object()) return detailText(entry);
  const auto& e = entry.get_object();
  std::string field;
  if (const auto* loc = arrayAt(e, "loc")) {
    std::vector<std::string> parts;
    for (const auto& p : *loc) parts.push_back(p.is_string() ? clean(p.get_string()) : clean(json::serialize(p)));
    // Drop the leading "body"/"query"/"path" unless it is all there is.
    std::size_t start = parts.size() > 1 && (parts[0] == "body" || parts[0] == "query" || parts[0] == "path") ? 1 : 0;
    for (std::size_t i = start; i < parts.size(); ++i) field += (field.empty() ? "" : ".") + parts[i];
  }
  if (field.empty()) field = "request";
  const json::value* msg = e.if_contains("msg");
  return field + ": " + (msg != nullptr && msg->is_string() ? clean(msg->get_string()) : cell(msg));
}

// Turns a non-2xx answer into an Exit{1} with the wording of the help footer.
Exit apiError(const HttpResponse& r, const ErrorContext& ctx) {
  auto body = parseJson(r.body);
  const json::value* detail = nullptr;
  if (body && body->is_object()) detail = body->get_object().if_contains("detail");
  switch (r.status) {
    case 401:
      return {kExitApi, "the token was not accepted (401)"};
    case 403:
      return {kExitApi, "your token lacks the " + ctx.scope + " scope (403)"};
    case 404:
      if (!ctx.not_found.empty()) return {kExitApi, ctx.not_found};
      break;
    case 422:
      if (detail != nullptr && detail->is_array()) {
        std::string msg = "the agent rejected the request (422):";
        for (const auto& e : detail->get_array()) msg += "\n  " + validationLine(e);
        return {kExitApi, msg};
      }
      break;
    default:
      break;
  }
  std::string msg = "the agent answered " + std::to_string(r.status);
  if (!r.reason.empty()) msg += " " + clean(r.reason);
  if (detail != nullptr) {
    msg += ": " + detailText(*detail);
  } else if (!r.body.empty()) {
    msg += ": " + clean(r.body.substr(0, 200));
  }
  if (body && body->is_object()) {
    if (const auto* id = body->get_object().if_contains("error_id")) msg += " (error_id " + cell(id) + ")";
  }
  return {kExitApi, msg};
}

// Checks the status; returns the parsed JSON of a 2xx answer.
json::value expectOk(const HttpResponse& r, const ErrorContext& ctx, const Options& opt) {
  if (r.status < 200 || r.status > 299) {
    if (opt.json && !r.body.empty()) std::cout << r.body << (r.body.back() == '\n' ? "" : "\n");
    throw apiError(r, ctx);
  }
  auto v = parseJson(r.body);
  if (!v) throw Exit{kExitApi, "the agent answered " + std::to_string(r.status) + " with a body that is not JSON"};
  return std::move(*v);
}

void printRaw(const HttpResponse& r) { std::cout << r.body << (r.body.empty() || r.body.back() != '\n' ? "\n" : ""); }

std::string whoAmI() {
  if (const char* u = std::getenv("SUDO_USER"); u != nullptr && *u != '\0') return u;
  if (passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_name != nullptr) return pw->pw_name;
  if (const char* u = std::getenv("USER"); u != nullptr) return u;
  return "unknown";
}

json::object requestedBy() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return json::object{{"system", "phonefarmctl"}, {"user", whoAmI()}, {"metadata", json::object{{"host", host}}}};
}

// --- subcommands ---------------------------------------------------------

void cmdPhones(const Client& c, const Options& opt) {
  auto r = c.call("GET", "/phones");
  auto v = expectOk(r, {}, opt);
  if (opt.json) return printRaw(r);
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
    t.add({cell(p, "phone_id"), cell(p, "serial"), cell(p, "adb_state"), cell(p, "health"), current,
           cell(p, "queue_depth"), last});
  }
  t.print(std::cout);
}

struct ProcessesArgs {
  std::string status;
  std::string phone;
  int limit = 0;
  std::string cursor;
};

void cmdProcesses(const Client& c, const Options& opt, const ProcessesArgs& a) {
  std::string query;
  auto add = [&query](const char* k, const std::string& v) {
    if (v.empty()) return;
    query += (query.empty() ? "?" : "&") + std::string(k) + "=" + phonefarm::ctl::percentEncode(v);
  };
  add("status", a.status);
  add("phone_id", a.phone);
  add("limit", a.limit > 0 ? std::to_string(a.limit) : "");
  add("cursor", a.cursor);
  auto r = c.call("GET", "/processes" + query);
  auto v = expectOk(r, {}, opt);
  if (opt.json) return printRaw(r);
  const json::array* list = v.is_object() ? arrayAt(v.get_object(), "processes") : nullptr;
  if (list == nullptr) throw Exit{kExitApi, "the agent's /processes answer has no \"processes\" list"};
  Table t({"ID", "STATUS", "PHONE", "ACCOUNT", "ITEMS", "CREATED"});
  for (const auto& pv : *list) {
    if (!pv.is_object()) continue;
    const auto& p = pv.get_object();
    const auto* items = arrayAt(p, "queue_items");
    t.add({cell(p, "process_id"), cell(p, "status"), cell(p, "phone_id"), cell(p, "account_id"),
           items ? std::to_string(items->size()) : "-", cell(p, "created_at")});
  }
  t.print(std::cout);
  const json::value* next = v.get_object().if_contains("next_cursor");
  if (next != nullptr && next->is_string()) std::cout << "(more: --cursor " << cell(next) << ")\n";
}

void cmdShow(const Client& c, const Options& opt, const std::string& id) {
  auto r = c.call("GET", "/processes/" + phonefarm::ctl::percentEncode(id));
  auto v = expectOk(r, {"read", "process " + clean(id) + " not found"}, opt);
  if (opt.json) return printRaw(r);
  if (!v.is_object()) throw Exit{kExitApi, "the agent's process answer is not an object"};
  const auto& p = v.get_object();
  Table head({"process", cell(p, "process_id")});
  head.add({"status", cell(p, "status")});
  head.add({"phone", cell(p, "phone_id")});
  head.add({"account", cell(p, "account_id")});
  head.add({"capability", cell(p, "capability_request_id")});
  head.add({"requested_by", cell(p, "requested_by")});
  head.add({"created", cell(p, "created_at")});
  head.add({"updated", cell(p, "updated_at")});
  head.print(std::cout);

  std::cout << "\nqueue items:\n";
  Table items({"POS", "ID", "STATUS", "EXIT", "SIGNAL", "STARTED", "ENDED", "NOTE"});
  if (const auto* list = arrayAt(p, "queue_items")) {
    for (const auto& iv : *list) {
      if (!iv.is_object()) continue;
      const auto& i = iv.get_object();
      items.add({cell(i, "position"), cell(i, "queue_item_id"), cell(i, "status"), cell(i, "exit_code"),
                 cell(i, "signal"), cell(i, "started_at"), cell(i, "ended_at"), cell(i, "note")});
    }
  }
  items.print(std::cout);

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
    t.print(std::cout);
  }
}

std::string plural(std::size_t n, const char* word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

// The cancel answer in words, e.g. "cancel_requested: 2 pending items
// cancelled; kill issued to container <id> (cgroup); phone reset <id> pending".
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
    const std::string ts = cell(*t, "status");
    std::string active = "-";
    if (const auto* target = objectAt(r, "active_target")) active = cell(*target, "queue_item_id");
    if (ts == "not_needed") {
      parts.push_back("nothing was executing");
    } else if (ts == "requested") {
      parts.push_back("stop notice sent to item " + active);
    } else if (ts == "scheduled") {
      parts.push_back("stop notice sent to item " + active + "; force kill at " + cell(*t, "force_at"));
    } else if (ts == "issued") {
      std::string what = "kill issued";
      if (const auto* ctr = objectAt(*t, "container")) {
        what += " to container " + cell(*ctr, "id") + " (" + cell(*ctr, "runtime") + ")";
      }
      parts.push_back(what);
    } else if (ts == "failed") {
      parts.push_back("kill could not be issued: " + cell(*t, "error"));
    } else {
      parts.push_back("termination " + ts);
    }
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
  std::optional<long long> force_after;
};

void cmdCancel(const Client& c, const Options& opt, const CancelArgs& a) {
  json::object body{{"reason", a.reason}, {"strategy", a.strategy}, {"requested_by", requestedBy()}};
  if (a.force_after) body["force_after_seconds"] = *a.force_after;
  auto r = c.call("POST", "/processes/" + phonefarm::ctl::percentEncode(a.id) + "/cancel", json::serialize(body));
  auto v = expectOk(r, {"operate", "process " + clean(a.id) + " not found"}, opt);
  if (opt.json) return printRaw(r);
  if (!v.is_object()) throw Exit{kExitApi, "the agent's cancel answer is not an object"};
  std::cout << describeCancel(v.get_object()) << '\n';
}

void cmdReset(const Client& c, const Options& opt, const std::string& phone, const std::string& reason) {
  json::object body{{"reason", reason}, {"requested_by", requestedBy()}};
  auto r = c.call("POST", "/phones/" + phonefarm::ctl::percentEncode(phone) + "/reset", json::serialize(body));
  auto v = expectOk(r, {"operate", "phone " + clean(phone) + " not found"}, opt);
  if (opt.json) return printRaw(r);
  if (!v.is_object()) throw Exit{kExitApi, "the agent's reset answer is not an object"};
  const auto& o = v.get_object();
  std::cout << "reset " << cell(o, "reset_id") << " of " << cell(o, "phone_id") << ": " << cell(o, "status") << '\n';
}

// --- setup -----------------------------------------------------------------

std::string defaultUrl() {
  std::ifstream probe(kDefaultConfig);
  if (!probe) return kFallbackUrl;
  try {
    auto cfg = phonefarm::loadConfigFile(kDefaultConfig);
    if (cfg.listen.port == 0) return kFallbackUrl;
    std::string host = cfg.listen.host;
    if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
    if (host == "::") host = "::1";
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    return "http://" + host + ":" + std::to_string(cfg.listen.port);
  } catch (const std::exception&) {
    return kFallbackUrl;
  }
}

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(0, s.find_first_not_of(ws));
  s.erase(s.find_last_not_of(ws) + 1);
  return s;
}

// --token-file if given, else $PHONEFARM_TOKEN, else the default file.
std::string loadToken(const std::string& token_file, bool explicit_file) {
  std::string token;
  std::string source;
  const char* env = std::getenv("PHONEFARM_TOKEN");
  if (!explicit_file && env != nullptr && *env != '\0') {
    token = trim(env);
    source = "PHONEFARM_TOKEN";
  } else {
    std::ifstream in(token_file);
    if (!in) {
      throw Exit{kExitUsage, "cannot read the token file " + token_file + ": " + std::strerror(errno) +
                                 " (use --token-file or set PHONEFARM_TOKEN)"};
    }
    std::getline(in, token);
    token = trim(token);
    source = token_file;
  }
  if (token.empty()) throw Exit{kExitUsage, "no token in " + source};
  for (char c : token) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) == 0x7f) {
      throw Exit{kExitUsage, "the token in " + source + " contains spaces or control characters"};
    }
  }
  return token;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"phonefarmctl: see and fix this rack's phones and work (talks to phonefarm-agent)"};
  app.set_version_flag("--version", std::string("phonefarmctl ") + PHONEFARM_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Token: --token-file (default " + std::string(kDefaultTokenFile) +
      ", one line), or the PHONEFARM_TOKEN environment variable when --token-file is not given.\n"
      "URL: --url, default the `listen` address of " +
      kDefaultConfig + " when readable, else " + kFallbackUrl +
      ".\n"
      "Exit codes:\n"
      "  0  success\n"
      "  1  the agent refused or failed the request (HTTP 4xx/5xx: bad token, missing scope, not found, invalid)\n"
      "  2  usage error (bad options or arguments, unreadable token)\n"
      "  3  the agent could not be reached (connection refused, timeout, not an HTTP answer)");

  Options opt;
  opt.url = "";
  opt.token_file = kDefaultTokenFile;
  app.add_option("--url", opt.url, "agent base URL, e.g. http://127.0.0.1:8787");
  auto* token_opt =
      app.add_option("--token-file", opt.token_file, "file holding the bearer token")->default_str(kDefaultTokenFile);
  app.add_flag("--json", opt.json, "print the agent's JSON as is");
  app.add_option("--timeout", opt.timeout_seconds, "seconds to wait for the agent (default 10)")
      ->check(CLI::Range(0.001, 3600.0));

  auto* phones = app.add_subcommand("phones", "the rack's phones: adb state, health, current work, last reset");

  ProcessesArgs pa;
  auto* processes = app.add_subcommand("processes", "list processes, newest first");
  processes->add_option("--status", pa.status, "only this status")
      ->check(CLI::IsMember({"queued", "running", "cancelling", "succeeded", "failed", "cancelled"}));
  processes->add_option("--phone", pa.phone, "only this phone id");
  processes->add_option("--limit", pa.limit, "at most N (1-500; agent default 100)")->check(CLI::Range(1, 500));
  processes->add_option("--cursor", pa.cursor, "continue after a previous page");

  std::string show_id;
  auto* show = app.add_subcommand("show", "one process: items, cancel record, audit trail");
  show->add_option("ID", show_id, "process id")->required();

  CancelArgs ca;
  long long force_after = 0;
  auto* cancel = app.add_subcommand("cancel", "cancel a process (POST /processes/{id}/cancel)");
  cancel->add_option("ID", ca.id, "process id")->required();
  cancel->add_option("--reason", ca.reason, "why (recorded in the audit trail)")
      ->required()
      ->check(CLI::Validator(
          [](std::string& s) { return s.empty() ? std::string("the reason must not be empty") : std::string(); },
          "TEXT"));
  cancel->add_option("--strategy", ca.strategy, "soft | hard | soft_then_force (default soft_then_force)")
      ->check(CLI::IsMember({"soft", "hard", "soft_then_force"}));
  auto* force_opt =
      cancel->add_option("--force-after", force_after, "seconds before soft_then_force kills (default 10)")
          ->check(CLI::Range(0LL, static_cast<long long>(INT_MAX)));

  std::string reset_phone;
  std::string reset_reason;
  auto* reset = app.add_subcommand("reset", "reset a phone's ADB/USB session");
  reset->add_option("PHONE", reset_phone, "phone id")->required();
  reset->add_option("--reason", reset_reason, "why (recorded)")
      ->required()
      ->check(CLI::Validator(
          [](std::string& s) { return s.empty() ? std::string("the reason must not be empty") : std::string(); },
          "TEXT"));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  try {
    std::string url_text = opt.url.empty() ? defaultUrl() : opt.url;
    Url url;
    try {
      url = Url::parse(url_text);
    } catch (const phonefarm::ctl::UrlError& e) {
      throw Exit{kExitUsage, std::string("--url: ") + e.what()};
    }
    const std::string token = loadToken(opt.token_file, token_opt->count() > 0);
    const auto timeout = std::chrono::milliseconds(static_cast<long long>(opt.timeout_seconds * 1000));
    Client client(url, url_text, token, timeout);

    if (phones->parsed()) {
      cmdPhones(client, opt);
    } else if (processes->parsed()) {
      cmdProcesses(client, opt, pa);
    } else if (show->parsed()) {
      cmdShow(client, opt, show_id);
    } else if (cancel->parsed()) {
      if (force_opt->count() > 0) ca.force_after = force_after;
      cmdCancel(client, opt, ca);
    } else if (reset->parsed()) {
      cmdReset(client, opt, reset_phone, reset_reason);
    }
    return kExitOk;
  } catch (const Exit& e) {
    if (!e.message.empty()) std::cerr << "phonefarmctl: " << e.message << '\n';
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "phonefarmctl: " << e.what() << '\n';
    return kExitApi;
  }
}
