// GET /debug (operate scope): what a technician's debug-dump needs to know
// about this agent in one JSON object —
//   agent      version, pid, start time and uptime
//   config     the effective configuration without secrets: the tokens
//              file's path (never its content), TLS file paths only
//   readiness  what GET /readyz shows, with the store's schema version
//   adb        the adb server: version and `devices -l`, or why not (AdbProbe,
//              off the I/O thread, short deadline)
//   work       the containment runtime, and under cgroups every execution
//              leaf with its pids and cgroup.events
//   metrics    the /metrics series as {"name{labels}": value}, buckets left out
//   threads    the agent's threads as [{tid, name}] (pf-io, pf-store, ...;
//              common/os/thread_name.hpp)
// Nothing here reads the tokens: the handler only ever sees their hashes.
#include <unistd.h>

#include <boost/json.hpp>
#include <charconv>

#include "agent/api/api_handler.hpp"
#include "agent/api/cgroup_report.hpp"
#include "agent/api/error_responses.hpp"
#include "common/os/thread_name.hpp"
#include "common/store/migrations.hpp"

namespace phonefarm::api {
namespace {

namespace json = boost::json;

json::object configJson(const AgentConfig& c) {
  json::object http{{"first_request_timeout_seconds", c.http.first_request_timeout.count()},
                    {"header_timeout_seconds", c.http.header_timeout.count()},
                    {"idle_timeout_seconds", c.http.idle_timeout.count()},
                    {"request_timeout_seconds", c.http.request_timeout.count()},
                    {"max_body_bytes", c.http.max_body_bytes},
                    {"max_connections", c.http.max_connections}};
  http["tls"] =
      c.http.tls
          ? json::value(json::object{{"tls_cert", c.http.tls->cert.string()}, {"tls_key", c.http.tls->key.string()}})
          : json::value(nullptr);
  json::object work{{"run_as", c.work.run_as},
                    {"allowed_command_prefixes", json::value_from(c.work.allowed_command_prefixes)},
                    {"cgroup_root", c.work.cgroup_root},
                    {"pids_max", c.work.pids_max ? json::value(*c.work.pids_max) : json::value(nullptr)},
                    {"memory_max", c.work.memory_max ? json::value(*c.work.memory_max) : json::value(nullptr)},
                    {"cpu_weight", c.work.cpu_weight ? json::value(*c.work.cpu_weight) : json::value(nullptr)},
                    {"log_max_bytes", c.work.log_max_bytes},
                    {"wait_for_device", c.work.wait_for_device},
                    {"on_shutdown", c.work.on_shutdown == ShutdownPolicy::kCancel ? "cancel" : "keep"},
                    {"launcher", launcherName(c.work.launcher)}};
  json::object adb{{"server", c.adb.server_host + ":" + std::to_string(c.adb.server_port)},
                   {"adb_path", c.adb.adb_path},
                   {"replace_foreign_server", c.adb.replace_foreign_server}};
  json::object reset{{"on_forced_cancel", c.reset.on_forced_cancel},
                     {"adb_reconnect_timeout_seconds", c.reset.adb_reconnect_timeout.count()},
                     {"usb_reset", c.reset.usb_reset},
                     {"usb_reset_timeout_seconds", c.reset.usb_reset_timeout.count()},
                     {"hub_power_cycle", c.reset.hub_power_cycle},
                     {"hub_power_off_seconds", c.reset.hub_power_off.count()}};
  json::object heal{{"enabled", c.heal.enabled},
                    {"after_seconds", c.heal.after.count()},
                    {"backoff_max_seconds", c.heal.backoff_max.count()},
                    {"probe_interval_seconds", c.heal.probe_interval.count()},
                    {"flap_count", c.heal.flap_count},
                    {"flap_window_seconds", c.heal.flap_window.count()},
                    {"hub_window_seconds", c.heal.hub_window.count()}};
  json::array phones;
  for (const auto& p : c.phones) {
    phones.push_back(json::object{{"id", p.id},
                                  {"serial", p.serial},
                                  {"usb_port", p.usb_port ? json::value(*p.usb_port) : json::value(nullptr)}});
  }
  return json::object{{"listen", c.listen.host + ":" + std::to_string(c.listen.port)},
                      {"state_dir", c.state_dir.string()},
                      {"tokens_file", c.tokens_file.string()},
                      {"http", std::move(http)},
                      {"work", std::move(work)},
                      {"adb", std::move(adb)},
                      {"reset", std::move(reset)},
                      {"heal", std::move(heal)},
                      {"phones", std::move(phones)}};
}

// The exposition text as {"series": value}: comments and histogram buckets
// dropped (the _sum and _count of each histogram stay).
json::object metricsSummary(std::string_view text) {
  json::object o;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string_view::npos) continue;
    const std::string_view series = line.substr(0, space);
    const std::string_view value = line.substr(space + 1);
    if (series.substr(0, series.find('{')).ends_with("_bucket")) continue;
    double v = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec == std::errc() && ptr == value.data() + value.size()) {
      o[series] = v;
    } else {
      o[series] = value;  // +Inf, NaN
    }
  }
  return o;
}

json::array threadsJson() {
  json::array a;
  for (const auto& t : os::listThreads()) a.push_back(json::object{{"tid", t.tid}, {"name", t.name}});
  return a;
}

}  // namespace

void ApiHandler::getDebug(const CallPtr& call) {
  auto respond = [this, call](Result<int> schema, json::object adb) {
    const WallMs now = s_.clock.wallNowMs();
    json::object agent{{"version", PHONEFARM_VERSION},
                       {"pid", static_cast<std::int64_t>(::getpid())},
                       {"started_at", formatRfc3339(started_at_)},
                       {"uptime_seconds", (now - started_at_) / 1000},
                       {"now", formatRfc3339(now)}};
    json::object readiness;
    if (schema) {
      readiness["store"] = "ok";
      readiness["schema_version"] = *schema;
      readiness["schema_current"] = *schema == static_cast<int>(store::migrations().size());
    } else {
      readiness["store"] = "unavailable";
      readiness["store_error"] = schema.error().message;
    }
    json::object work;
    if (s_.readiness_details) {
      for (auto& kv : s_.readiness_details()) {
        if (kv.key() == "work" && kv.value().is_object()) work = kv.value().get_object();
        readiness[kv.key()] = kv.value();
      }
    }
    if (const auto* dir = work.if_contains("cgroup"); dir != nullptr && dir->is_string()) {
      work["tree"] = describeCgroupTree(std::string(dir->get_string()));
    }
    std::string metrics_text = metrics_.render();
    if (s_.collect) {
      metrics::Registry pulled;
      s_.collect(pulled);
      metrics_text += pulled.render();
    }
    json::object body{{"agent", std::move(agent)},         {"config", configJson(s_.config)},
                      {"readiness", std::move(readiness)}, {"adb", std::move(adb)},
                      {"work", std::move(work)},           {"metrics", metricsSummary(metrics_text)},
                      {"threads", threadsJson()}};
    call->reply(jsonResponse(200, body));
  };
  s_.store.submit<int>([](store::Db& db) { return store::userVersion(db); },
                       [this, respond](Result<int> schema) {
                         onIo([this, respond, schema = std::move(schema)]() mutable {
                           if (!s_.adb_probe) {
                             return respond(std::move(schema), json::object{{"error", "adb probe not available"}});
                           }
                           s_.adb_probe([this, respond, schema = std::move(schema)](json::object adb) mutable {
                             onIo([respond, schema = std::move(schema), adb = std::move(adb)]() mutable {
                               respond(std::move(schema), std::move(adb));
                             });
                           });
                         });
                       });
}

}  // namespace phonefarm::api
