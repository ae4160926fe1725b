// AgentConfig: the typed form of /etc/phonefarm-agent/agent.toml (docs/design.md
// lists every key and its default). Parsed once at start; unknown keys, wrong
// types and out-of-range values are ConfigError exceptions that name the key
// (and the line, when it came from a file).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace phonefarm {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ListenAddress {
  std::string host = "127.0.0.1";  // IPv4/IPv6 literal or "localhost"
  std::uint16_t port = 8787;       // 0 = pick a free port (tests)
};

// [http] tls_cert / tls_key: the listener speaks TLS when both are set. Only
// the paths live here; agent/http/tls_context reads and checks the files (at
// start-up, by check-config and on SIGHUP), so parsing stays free of I/O and
// phonefarmctl can read the config without access to the key.
struct TlsFiles {
  std::filesystem::path cert;  // PEM certificate chain, leaf first
  std::filesystem::path key;   // PEM private key; must not be readable by others
};

struct HttpConfig {
  // A new connection's first request header must be complete within this,
  // counted from the accept (TLS handshake included): a client that connects
  // and stays silent, or dribbles, holds a slot only this long.
  std::chrono::seconds first_request_timeout{5};
  std::chrono::seconds header_timeout{10};
  std::chrono::seconds idle_timeout{60};
  std::chrono::seconds request_timeout{30};
  std::size_t max_body_bytes = 65536;
  std::size_t max_connections = 512;
  std::optional<TlsFiles> tls;  // nullopt = plain HTTP (the default)
  // GET /metrics needs a read token unless this is false (docs/api.md, "Auth": "read, or
  // none if configured"): for a Prometheus that scrapes without credentials.
  bool metrics_require_token = true;
  // Open GET /events streams at once; one more gets 503.
  std::size_t max_event_streams = 32;
};

// [events]: retention of the event log (GET /events); whichever limit is
// reached first drops the oldest events.
struct EventsConfig {
  std::chrono::days retention{7};
  std::int64_t max_events = 1'000'000;
  // Events buffered for one GET /events stream; a client further behind gets
  // `event: overflow` and is closed.
  std::size_t stream_buffer = 4096;
};

enum class ShutdownPolicy { kKeep, kCancel };

// [work] launcher: who starts an execution's exec shim. kDirect: the agent
// forks it into a cgroup leaf of its own subtree (development, CI, an agent
// run by hand). kSystemd: systemd starts it as an instance of the template
// unit phonefarm-job@.service, which carries the job's sandbox
// (agent/exec/systemd_job_units.hpp).
enum class WorkLauncher { kDirect, kSystemd };

struct WorkConfig {
  std::string run_as = "phonefarm-work";
  std::vector<std::string> allowed_command_prefixes{"/opt/phonefarm/jobs/"};
  // Env names a submit may set; none = every name but the loader and
  // interpreter hooks, PATH and HOME (agent/exec/env_policy.cpp).
  std::optional<std::vector<std::string>> allowed_env;
  std::string cgroup_root;  // "" = detect our delegated subtree
  // Per-execution limits (agent/exec/work_limits.hpp), in force before the
  // command starts. none = not limited.
  std::optional<std::int64_t> pids_max = 4096;  // processes and threads of one execution
  std::optional<std::uint64_t> memory_max;      // bytes (memory.max / memory.limit_in_bytes, swap not counted)
  std::optional<std::int64_t> cpu_weight;       // 1..10000, cgroup v2 cpu.weight (default 100)
  bool wait_for_device = true;
  ShutdownPolicy on_shutdown = ShutdownPolicy::kKeep;
  // What each of an execution's stdout.log and stderr.log keeps at most; the
  // rest is dropped (agent/exec/log_relay.hpp). 1 KiB .. 1 TiB.
  std::uint64_t log_max_bytes = 64ULL << 20;
  WorkLauncher launcher = WorkLauncher::kDirect;
};

// "direct" / "systemd", as agent.toml writes it.
std::string_view launcherName(WorkLauncher launcher);

struct AdbConfig {
  std::string server_host = "127.0.0.1";
  std::uint16_t server_port = 5037;
  std::string adb_path = "/usr/bin/adb";
  // A server of another adb version on the port: stop it and start ours
  // (true), or leave it running and report it (false).
  bool replace_foreign_server = false;
};

struct ResetConfig {
  bool on_forced_cancel = true;
  std::chrono::seconds adb_reconnect_timeout{20};
  bool usb_reset = true;
  std::chrono::seconds usb_reset_timeout{30};
  bool hub_power_cycle = false;
  std::chrono::seconds hub_power_off{3};
};

// [heal]: the rack heals itself (agent/phone/heal_service.hpp). Phones that
// leave `device` on their own get the reset ladder, idle phones are probed,
// flapping phones are quarantined, hubs whose phones drop together are
// power-cycled once.
struct HealConfig {
  bool enabled = true;
  std::chrono::seconds after{30};          // out of `device` this long, idle: heal
  std::chrono::seconds backoff_max{1800};  // failed heals wait 1 min, 2 min, 4 min ... up to this
  std::chrono::seconds probe_interval{300};
  int flap_count = 3;  // drops within flap_window: quarantine
  std::chrono::seconds flap_window{600};
  std::chrono::seconds hub_window{10};  // drops of one hub's phones this close: one hub event
};

// [retention]: what is deleted, how old. Days may be fractions (0.5 = 12 h),
// which is also how the integration tests get retention within seconds.
struct RetentionConfig {
  double processes_days = 30;  // terminal processes, their items, audit trail and old resets
  double executions_days = 7;  // execution directories (logs, status) of ended items
  std::chrono::seconds sweep_interval{300};
};

// [storage]: the free space of the file system of state_dir.
struct StorageConfig {
  std::uint64_t min_free_bytes = 512ULL * 1024 * 1024;  // below it, new submissions get 503
  std::uint64_t reserve_bytes = 32ULL * 1024 * 1024;    // ballast kept for the store's commits
};

struct PhoneConfig {
  std::string id;
  std::string serial;
  std::optional<std::string> usb_port;
};

struct AgentConfig {
  ListenAddress listen;
  std::filesystem::path state_dir = "/var/lib/phonefarm-agent";
  std::filesystem::path tokens_file = "/etc/phonefarm-agent/tokens";
  HttpConfig http;
  WorkConfig work;
  AdbConfig adb;
  ResetConfig reset;
  HealConfig heal;
  RetentionConfig retention;
  StorageConfig storage;
  EventsConfig events;
  std::vector<PhoneConfig> phones;

  const PhoneConfig* findPhone(std::string_view id) const;
};

// Parses TOML text; `origin` names the source in error messages (a path).
// Throws ConfigError.
AgentConfig parseConfig(std::string_view toml_text, std::string_view origin);
// Reads and parses a file. Throws ConfigError (also when unreadable).
AgentConfig loadConfigFile(const std::filesystem::path& path);
// devConfig(), the built-in configuration of `phonefarm-agent --dev`, is in
// dev_config.hpp.

// "host:port" -> ListenAddress; throws ConfigError naming `key`.
ListenAddress parseHostPort(std::string_view text, std::string_view key);

}  // namespace phonefarm
