// Loads agent.toml into AgentConfig: one reader per table ([http], [work],
// [adb], [reset], [heal], [[phones]]) with the value checks of its keys. Every table
// is read through a TomlSection (toml_section.hpp) that records the keys it
// consumed, so whatever is left over is rejected as unknown with its full
// dotted name and line: a typo in a key must never fall back silently to a
// default on a production rack. The --dev configuration is dev_config.cpp.
#include "common/config/config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include "common/config/toml_section.hpp"

namespace phonefarm {
namespace {

constexpr std::int64_t kMaxHttpSeconds = 86400;
constexpr std::int64_t kMaxResetSeconds = 3600;
constexpr std::int64_t kMaxBodyBytes = 64 * 1024 * 1024;
constexpr std::int64_t kMaxConnections = 100000;
constexpr std::int64_t kMaxEventStreams = 10000;
constexpr std::int64_t kMaxEventRetentionDays = 3650;
constexpr std::int64_t kMaxEvents = 1'000'000'000;
constexpr std::int64_t kMaxStreamBuffer = 1'000'000;
constexpr std::size_t kMaxPhoneIdLength = 128;
constexpr double kMinRetentionDays = 0.00001;
constexpr double kMaxRetentionDays = 36500;
constexpr std::int64_t kMaxStorageBytes = std::int64_t{1} << 50;  // 1 PiB
constexpr std::size_t kMaxSerialLength = 128;

bool hasControlChar(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

// Parses "host:port" into `out`; returns why it is not one ("" on success),
// without the key, which the callers add in their own format.
std::string splitHostPort(std::string_view text, ListenAddress& out) {
  if (hasControlChar(text)) return "contains control characters";
  std::string_view port;
  if (text.starts_with('[')) {
    const auto close = text.find("]:");
    if (close == std::string_view::npos) return "expected [IPv6 address]:port";
    out.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
    in6_addr addr6{};
    if (::inet_pton(AF_INET6, out.host.c_str(), &addr6) != 1) return "'" + out.host + "' is not an IPv6 address";
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return "missing ':port'";
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) return "an IPv6 address must be in brackets, e.g. [::1]:8787";
    in_addr addr4{};
    if (out.host != "localhost" && ::inet_pton(AF_INET, out.host.c_str(), &addr4) != 1) {
      return "host must be an IPv4 address, a bracketed IPv6 address or localhost";
    }
  }
  const bool digits = !port.empty() && port.size() <= 5 &&
                      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  const long value = digits ? std::stol(std::string(port)) : -1;
  if (value < 0 || value > 65535) return "port must be a number from 0 to 65535";
  out.port = static_cast<std::uint16_t>(value);
  return {};
}

void readHostPort(TomlSection& s, std::string_view key, bool allow_port_zero, std::string& host, std::uint16_t& port) {
  auto text = s.string(key);
  if (!text) return;
  const toml::node& at = *s.find(key);
  ListenAddress addr;
  if (auto why = splitHostPort(*text, addr); !why.empty()) {
    s.fail(at, key, "is not a valid \"host:port\" (\"" + printable(*text) + "\"): " + why);
  }
  if (!allow_port_zero && addr.port == 0) s.fail(at, key, "must not use port 0");
  host = std::move(addr.host);
  port = addr.port;
}

void readHttp(TomlSection s, HttpConfig& http) {
  s.seconds("first_request_timeout_seconds", kMaxHttpSeconds, http.first_request_timeout);
  s.seconds("header_timeout_seconds", kMaxHttpSeconds, http.header_timeout);
  s.seconds("idle_timeout_seconds", kMaxHttpSeconds, http.idle_timeout);
  s.seconds("request_timeout_seconds", kMaxHttpSeconds, http.request_timeout);
  if (auto v = s.integer("max_body_bytes", 1, kMaxBodyBytes)) http.max_body_bytes = static_cast<std::size_t>(*v);
  if (auto v = s.integer("max_connections", 1, kMaxConnections)) http.max_connections = static_cast<std::size_t>(*v);
  s.boolean("metrics_require_token", http.metrics_require_token);
  if (auto v = s.integer("max_event_streams", 0, kMaxEventStreams))
    http.max_event_streams = static_cast<std::size_t>(*v);
  // Relative paths are allowed as for tokens_file (tests run from a work tree).
  auto cert = s.path("tls_cert", /*absolute=*/false, /*allow_empty=*/false);
  auto key = s.path("tls_key", /*absolute=*/false, /*allow_empty=*/false);
  if (cert && key) {
    http.tls = TlsFiles{std::move(*cert), std::move(*key)};
  } else if (cert || key) {
    // A listener with half a TLS setup must not fall back to plain HTTP.
    const std::string_view set = cert ? "tls_cert" : "tls_key";
    const std::string_view missing = cert ? "tls_key" : "tls_cert";
    s.fail(*s.find(set), set, "is set but '" + s.name(missing) + "' is not (set both or neither)");
  }
  s.rejectUnknown();
}

void readEvents(TomlSection s, EventsConfig& events) {
  if (auto v = s.integer("retention_days", 1, kMaxEventRetentionDays)) events.retention = std::chrono::days(*v);
  if (auto v = s.integer("max_events", 1000, kMaxEvents)) events.max_events = *v;
  if (auto v = s.integer("stream_buffer", 16, kMaxStreamBuffer)) events.stream_buffer = static_cast<std::size_t>(*v);
  s.rejectUnknown();
}

// Enum values go through a table so the accepted names live in one place.
constexpr std::pair<std::string_view, ShutdownPolicy> kShutdownPolicies[] = {
    {"keep", ShutdownPolicy::kKeep},
    {"cancel", ShutdownPolicy::kCancel},
};

constexpr std::pair<std::string_view, WorkLauncher> kLaunchers[] = {
    {"direct", WorkLauncher::kDirect},
    {"systemd", WorkLauncher::kSystemd},
};

// The smallest memory_max taken: below it not even the exec shim starts, and
// every item would fail as an OOM kill instead of a clear config error.
constexpr std::uint64_t kMinMemoryMax = 4ULL << 20;
// PID_MAX_LIMIT on 64-bit kernels: more can never exist at once.
constexpr std::int64_t kMaxPidsMax = 4194304;

void readWorkLimits(TomlSection& s, WorkConfig& work) {
  // pids_max counts the exec shim and the command too: below 8 a shell
  // script could not even run a pipeline.
  if (auto v = s.integer("pids_max", 8, kMaxPidsMax)) work.pids_max = *v;
  if (auto bytes = s.byteSize("memory_max", "4G")) {
    if (*bytes < kMinMemoryMax) {
      s.fail(*s.find("memory_max"), "memory_max", "must be at least 4M (" + std::to_string(kMinMemoryMax) + " bytes)");
    }
    work.memory_max = *bytes;
  }
  if (auto v = s.integer("cpu_weight", 1, 10000)) work.cpu_weight = *v;
}

// [work] log_max_bytes: bytes, or a size such as "64M" (byte_size.hpp).
constexpr std::uint64_t kMinLogMaxBytes = 1024;
constexpr std::uint64_t kMaxLogMaxBytes = 1ULL << 40;

void readLogMaxBytes(TomlSection& s, WorkConfig& work) {
  auto bytes = s.byteSize("log_max_bytes", "64M");
  if (!bytes) return;
  if (*bytes < kMinLogMaxBytes || *bytes > kMaxLogMaxBytes) {
    s.fail(*s.find("log_max_bytes"), "log_max_bytes",
           "must be from 1K to 1T (" + std::to_string(kMinLogMaxBytes) + " to " + std::to_string(kMaxLogMaxBytes) +
               " bytes)");
  }
  work.log_max_bytes = *bytes;
}

void readWork(TomlSection s, WorkConfig& work) {
  if (auto v = s.string("run_as")) {
    if (v->empty() || hasControlChar(*v)) s.fail(*s.find("run_as"), "run_as", "must be a non-empty user name");
    work.run_as = std::move(*v);
  }
  if (const toml::array* prefixes = s.array("allowed_command_prefixes", "absolute paths")) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < prefixes->size(); ++i) {
      const toml::node& item = *prefixes->get(i);
      const std::string key = "allowed_command_prefixes[" + std::to_string(i) + "]";
      const auto* value = item.as_string();
      if (value == nullptr) s.fail(item, key, "must be a string");
      s.checkPath(item, key, value->get(), /*absolute=*/true, /*allow_empty=*/false);
      out.push_back(value->get());
    }
    work.allowed_command_prefixes = std::move(out);
  }
  if (const toml::array* names = s.array("allowed_env", "environment variable names")) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < names->size(); ++i) {
      const toml::node& item = *names->get(i);
      const std::string key = "allowed_env[" + std::to_string(i) + "]";
      const auto* value = item.as_string();
      if (value == nullptr || value->get().empty() ||
          value->get().find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
              std::string::npos ||
          (value->get()[0] >= '0' && value->get()[0] <= '9')) {
        s.fail(item, key, "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
      }
      out.push_back(value->get());
    }
    work.allowed_env = std::move(out);
  }
  if (auto v = s.path("cgroup_root", /*absolute=*/true, /*allow_empty=*/true)) work.cgroup_root = std::move(*v);
  readWorkLimits(s, work);
  readLogMaxBytes(s, work);
  s.boolean("wait_for_device", work.wait_for_device);
  if (auto v = s.string("on_shutdown")) {
    const auto* it = std::find_if(std::begin(kShutdownPolicies), std::end(kShutdownPolicies),
                                  [&](const auto& entry) { return entry.first == *v; });
    if (it == std::end(kShutdownPolicies)) {
      s.fail(*s.find("on_shutdown"), "on_shutdown", "must be \"keep\" or \"cancel\" (got \"" + printable(*v) + "\")");
    }
    work.on_shutdown = it->second;
  }
  if (auto v = s.string("launcher")) {
    const auto* it = std::find_if(std::begin(kLaunchers), std::end(kLaunchers),
                                  [&](const auto& entry) { return entry.first == *v; });
    if (it == std::end(kLaunchers)) {
      s.fail(*s.find("launcher"), "launcher", "must be \"direct\" or \"systemd\" (got \"" + printable(*v) + "\")");
    }
    work.launcher = it->second;
  }
  s.rejectUnknown();
}

void readAdb(TomlSection s, AdbConfig& adb) {
  readHostPort(s, "server", /*allow_port_zero=*/false, adb.server_host, adb.server_port);
  if (auto v = s.path("adb_path", /*absolute=*/true, /*allow_empty=*/false)) adb.adb_path = std::move(*v);
  s.boolean("replace_foreign_server", adb.replace_foreign_server);
  s.rejectUnknown();
}

void readReset(TomlSection s, ResetConfig& reset) {
  s.boolean("on_forced_cancel", reset.on_forced_cancel);
  s.seconds("adb_reconnect_timeout_seconds", kMaxResetSeconds, reset.adb_reconnect_timeout);
  s.boolean("usb_reset", reset.usb_reset);
  s.seconds("usb_reset_timeout_seconds", kMaxResetSeconds, reset.usb_reset_timeout);
  s.boolean("hub_power_cycle", reset.hub_power_cycle);
  s.seconds("hub_power_off_seconds", kMaxResetSeconds, reset.hub_power_off);
  s.rejectUnknown();
}

constexpr std::int64_t kMaxHealSeconds = 86400;
constexpr std::int64_t kMaxFlapCount = 1000;

void readHeal(TomlSection s, HealConfig& heal) {
  s.boolean("enabled", heal.enabled);
  s.seconds("after_seconds", kMaxHealSeconds, heal.after);
  s.seconds("backoff_max_seconds", kMaxHealSeconds, heal.backoff_max);
  s.seconds("probe_interval_seconds", kMaxHealSeconds, heal.probe_interval);
  if (auto v = s.integer("flap_count", 2, kMaxFlapCount)) heal.flap_count = static_cast<int>(*v);
  s.seconds("flap_window_seconds", kMaxHealSeconds, heal.flap_window);
  s.seconds("hub_window_seconds", kMaxResetSeconds, heal.hub_window);
  s.rejectUnknown();
}

// Days as an integer or a float, > 0: fractions are allowed (0.5 = 12 h).
void readDays(TomlSection& s, std::string_view key, double& out) {
  const toml::node* node = s.find(key);
  if (node == nullptr) return;
  double v = 0;
  if (const auto* i = node->as_integer()) {
    v = static_cast<double>(i->get());
  } else if (const auto* f = node->as_floating_point()) {
    v = f->get();
  } else {
    s.fail(*node, key, "must be a number of days");
  }
  // 1e-5 days is 0.864 s: anything shorter would only make the sweeps spin.
  if (!(v >= kMinRetentionDays && v <= kMaxRetentionDays)) {
    s.fail(*node, key, "must be from 0.00001 to 36500 days (got " + std::to_string(v) + ")");
  }
  out = v;
}

void readRetention(TomlSection s, RetentionConfig& retention) {
  readDays(s, "processes_days", retention.processes_days);
  readDays(s, "executions_days", retention.executions_days);
  s.seconds("sweep_interval_seconds", kMaxHttpSeconds, retention.sweep_interval);
  s.rejectUnknown();
}

// [storage] sizes: bytes, or a size such as "512M" (byte_size.hpp), as log_max_bytes.
void readStorageBytes(TomlSection& s, std::string_view key, std::string_view example, std::uint64_t& out) {
  auto bytes = s.byteSize(key, example);
  if (!bytes) return;
  if (*bytes > static_cast<std::uint64_t>(kMaxStorageBytes)) {
    s.fail(
        *s.find(key), key,
        "must be at most 1024T (" + std::to_string(kMaxStorageBytes) + " bytes; got " + std::to_string(*bytes) + ")");
  }
  out = *bytes;
}

void readStorage(TomlSection s, StorageConfig& storage) {
  readStorageBytes(s, "min_free_bytes", "512M", storage.min_free_bytes);
  readStorageBytes(s, "reserve_bytes", "32M", storage.reserve_bytes);
  s.rejectUnknown();
}

bool isPhoneId(std::string_view id) {
  return !id.empty() && id.size() <= kMaxPhoneIdLength && std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '-';
  });
}

bool isSerial(std::string_view serial) {
  return !serial.empty() && serial.size() <= kMaxSerialLength &&
         std::none_of(serial.begin(), serial.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f; });
}

// Linux USB port paths look like "<bus>-<port>[.<port>]*", e.g. "1-1.4".
bool isUsbPort(std::string_view port) {
  const auto dash = port.find('-');
  if (dash == 0 || dash == std::string_view::npos || port.size() > 64) return false;
  const auto isDigit = [](char c) { return c >= '0' && c <= '9'; };
  if (!std::all_of(port.begin(), port.begin() + static_cast<std::ptrdiff_t>(dash), isDigit)) return false;
  bool after_separator = true;  // each '.'-separated port number must be non-empty
  for (char c : port.substr(dash + 1)) {
    if (isDigit(c)) {
      after_separator = false;
    } else if (c == '.' && !after_separator) {
      after_separator = true;
    } else {
      return false;
    }
  }
  return !after_separator;
}

PhoneConfig readPhone(TomlSection s) {
  PhoneConfig phone;
  const auto required = [&](std::string_view key) {
    auto v = s.string(key);
    if (!v) failAt(s.origin(), s.node().source(), "'" + s.name(key) + "' is required");
    return std::move(*v);
  };
  phone.id = required("id");
  if (!isPhoneId(phone.id)) {
    s.fail(*s.find("id"), "id",
           "must be 1-128 characters of A-Z a-z 0-9 . _ : - (got \"" + printable(phone.id) + "\")");
  }
  phone.serial = required("serial");
  if (!isSerial(phone.serial)) {
    s.fail(*s.find("serial"), "serial", "must be 1-128 characters without whitespace or control characters");
  }
  if (auto port = s.string("usb_port")) {
    if (!isUsbPort(*port)) {
      s.fail(*s.find("usb_port"), "usb_port",
             "must be a USB bus-port path like \"1-1.4\" (got \"" + printable(*port) + "\")");
    }
    phone.usb_port = std::move(*port);
  }
  s.rejectUnknown();
  return phone;
}

void readPhones(std::string_view origin, const toml::array& phones, std::vector<PhoneConfig>& out) {
  std::map<std::string, std::size_t, std::less<>> ids;
  std::map<std::string, std::size_t, std::less<>> serials;
  for (std::size_t i = 0; i < phones.size(); ++i) {
    const toml::node& node = *phones.get(i);
    const std::string path = "phones[" + std::to_string(i) + "]";
    const auto* table = node.as_table();
    if (table == nullptr) failAt(origin, node.source(), "'" + path + "' must be a table ([[phones]])");
    PhoneConfig phone = readPhone(TomlSection(origin, *table, path));
    if (auto [it, fresh] = ids.emplace(phone.id, i); !fresh) {
      failAt(origin, table->get("id")->source(),
             "'" + path + ".id' duplicates phones[" + std::to_string(it->second) + "] (\"" + phone.id + "\")");
    }
    if (auto [it, fresh] = serials.emplace(phone.serial, i); !fresh) {
      failAt(origin, table->get("serial")->source(),
             "'" + path + ".serial' duplicates phones[" + std::to_string(it->second) + "] (\"" + phone.serial + "\")");
    }
    out.push_back(std::move(phone));
  }
}

}  // namespace

const PhoneConfig* AgentConfig::findPhone(std::string_view id) const {
  for (const PhoneConfig& phone : phones) {
    if (phone.id == id) return &phone;
  }
  return nullptr;
}

ListenAddress parseHostPort(std::string_view text, std::string_view key) {
  ListenAddress addr;
  if (auto why = splitHostPort(text, addr); !why.empty()) {
    throw ConfigError("'" + std::string(key) + "' is not a valid \"host:port\" (\"" + printable(text) + "\"): " + why);
  }
  return addr;
}

AgentConfig parseConfig(std::string_view toml_text, std::string_view origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    failAt(origin, e.source(), std::string(e.description()));
  }

  AgentConfig config;
  TomlSection top(origin, root, "");
  readHostPort(top, "listen", /*allow_port_zero=*/true, config.listen.host, config.listen.port);
  // Relative state and token paths are allowed: --dev and tests run from a work tree.
  if (auto v = top.path("state_dir", /*absolute=*/false, /*allow_empty=*/false)) config.state_dir = *v;
  if (auto v = top.path("tokens_file", /*absolute=*/false, /*allow_empty=*/false)) config.tokens_file = *v;
  if (const toml::table* t = top.table("http")) readHttp(TomlSection(origin, *t, "http"), config.http);
  if (const toml::table* t = top.table("work")) readWork(TomlSection(origin, *t, "work"), config.work);
  if (const toml::table* t = top.table("adb")) readAdb(TomlSection(origin, *t, "adb"), config.adb);
  if (const toml::table* t = top.table("reset")) readReset(TomlSection(origin, *t, "reset"), config.reset);
  if (const toml::table* t = top.table("heal")) readHeal(TomlSection(origin, *t, "heal"), config.heal);
  if (const toml::table* t = top.table("retention")) {
    readRetention(TomlSection(origin, *t, "retention"), config.retention);
  }
  if (const toml::table* t = top.table("storage")) readStorage(TomlSection(origin, *t, "storage"), config.storage);
  if (const toml::table* t = top.table("events")) readEvents(TomlSection(origin, *t, "events"), config.events);
  if (const toml::array* a = top.array("phones", "tables ([[phones]])")) readPhones(origin, *a, config.phones);
  top.rejectUnknown();
  return config;
}

AgentConfig loadConfigFile(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec) throw ConfigError(path.string() + ": cannot read: " + ec.message());
  if (!std::filesystem::is_regular_file(status)) throw ConfigError(path.string() + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path.string() + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path.string() + ": read error");
  return parseConfig(text.str(), path.string());
}

std::string_view launcherName(WorkLauncher launcher) {
  for (const auto& [name, value] : kLaunchers) {
    if (value == launcher) return name;
  }
  return "direct";
}

}  // namespace phonefarm
