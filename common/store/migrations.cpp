// The schema. Times are integer milliseconds since the Unix epoch (UTC);
// JSON-valued columns (requested_by, command, env) hold compact JSON text.
#include "common/store/migrations.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <stdexcept>
#include <string>

namespace phonefarm::store {
namespace {

constexpr std::string_view kV1 = R"sql(
CREATE TABLE processes (
  seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
  process_id            TEXT NOT NULL UNIQUE,
  status                TEXT NOT NULL CHECK (status IN
                          ('queued','running','cancelling','succeeded','failed','cancelled')),
  phone_id              TEXT NOT NULL,
  account_id            TEXT NOT NULL,
  capability_request_id TEXT NOT NULL,
  requested_by          TEXT NOT NULL,
  created_at            INTEGER NOT NULL,
  updated_at            INTEGER NOT NULL,
  -- the effective cancel (first accepted request, escalations folded in);
  -- every request is also in cancel_audit
  cancel_reason         TEXT,
  cancel_strategy       TEXT,
  cancel_requested_at   INTEGER,
  cancel_force_at       INTEGER,
  cancel_requested_by   TEXT
);
CREATE INDEX processes_by_status ON processes (status, seq);
CREATE INDEX processes_by_phone ON processes (phone_id, seq);

CREATE TABLE queue_items (
  queue_item_id   TEXT PRIMARY KEY,
  process_id      TEXT NOT NULL REFERENCES processes (process_id),
  position        INTEGER NOT NULL,
  status          TEXT NOT NULL CHECK (status IN
                    ('pending','executing','succeeded','failed','cancelled','skipped')),
  command         TEXT NOT NULL,
  env             TEXT NOT NULL,
  timeout_seconds INTEGER,
  stop_signal     TEXT NOT NULL,
  started_at      INTEGER,
  ended_at        INTEGER,
  exit_code       INTEGER,
  signal          TEXT,
  note            TEXT,
  UNIQUE (process_id, position)
);

CREATE TABLE executions (
  execution_id      TEXT PRIMARY KEY,
  queue_item_id     TEXT NOT NULL REFERENCES queue_items (queue_item_id),
  runtime           TEXT NOT NULL,
  cgroup            TEXT,
  leader_pid        INTEGER,
  leader_start_time INTEGER,
  boot_id           TEXT,
  started_at        INTEGER NOT NULL,
  ended_at          INTEGER,
  outcome           TEXT
);
CREATE INDEX executions_by_item ON executions (queue_item_id);

CREATE TABLE cancel_audit (
  id                  INTEGER PRIMARY KEY AUTOINCREMENT,
  process_id          TEXT NOT NULL REFERENCES processes (process_id),
  queue_item_id       TEXT,
  endpoint            TEXT NOT NULL,
  requested_at        INTEGER NOT NULL,
  reason              TEXT NOT NULL,
  strategy            TEXT NOT NULL,
  force_after_seconds INTEGER NOT NULL,
  requested_by        TEXT NOT NULL,
  outcome             TEXT NOT NULL,
  termination_status  TEXT NOT NULL,
  detail              TEXT
);
CREATE INDEX cancel_audit_by_process ON cancel_audit (process_id, id);

CREATE TABLE escalations (
  queue_item_id  TEXT PRIMARY KEY REFERENCES queue_items (queue_item_id),
  process_id     TEXT NOT NULL REFERENCES processes (process_id),
  force_at       INTEGER NOT NULL,
  force_at_boot_ns INTEGER NOT NULL,
  boot_id        TEXT NOT NULL,
  created_at     INTEGER NOT NULL,
  fired_at       INTEGER
);

CREATE TABLE phones (
  phone_id   TEXT PRIMARY KEY,
  serial     TEXT NOT NULL,
  usb_port   TEXT,
  health     TEXT NOT NULL DEFAULT 'ready',
  updated_at INTEGER NOT NULL
);

CREATE TABLE phone_resets (
  reset_id     TEXT PRIMARY KEY,
  phone_id     TEXT NOT NULL,
  trigger      TEXT NOT NULL,
  status       TEXT NOT NULL,
  reason       TEXT,
  requested_by TEXT,
  requested_at INTEGER NOT NULL,
  ended_at     INTEGER,
  steps        TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX phone_resets_by_phone ON phone_resets (phone_id, requested_at);
)sql";

// Job env values are secrets: they are kept only while the item may still
// run. When an item reaches a terminal status its env keeps the names, each
// value replaced by "", in the same transaction; items that ended before
// this migration are scrubbed by it.
constexpr std::string_view kV2ForgetEnvValues = R"sql(
CREATE TRIGGER queue_items_forget_env_values
AFTER UPDATE OF status ON queue_items
WHEN NEW.status IN ('succeeded','failed','cancelled','skipped') AND NEW.env <> '{}'
BEGIN
  UPDATE queue_items SET env = (SELECT json_group_object(key, '') FROM json_each(NEW.env))
  WHERE queue_item_id = NEW.queue_item_id;
END;
UPDATE queue_items SET env = (SELECT json_group_object(key, '') FROM json_each(queue_items.env))
WHERE status IN ('succeeded','failed','cancelled','skipped') AND env <> '{}';
)sql";

// Retention (agent/daemon/retention_sweeper): which execution directories
// are still on disk, and the oldest processes first.
constexpr std::string_view kV3Retention = R"sql(
ALTER TABLE executions ADD COLUMN files_removed_at INTEGER;
CREATE INDEX executions_files_pending ON executions (ended_at) WHERE files_removed_at IS NULL;
CREATE INDEX processes_by_updated ON processes (updated_at);
)sql";

// The file gives back what retention deletes: with auto_vacuum = INCREMENTAL
// the store frees pages in small steps (PRAGMA incremental_vacuum) instead of
// a VACUUM that rewrites the whole file. Switching an existing database takes
// one full VACUUM (6-13 s at 10^6 processes on a 2-core VM; README,
// "Disk and retention"), which cannot run inside a transaction.
constexpr std::string_view kV4IncrementalVacuum = R"sql(-- no transaction
PRAGMA auto_vacuum = INCREMENTAL;
VACUUM;
)sql";

// The event log (GET /events): one row per state change, appended in the
// change's own transaction. AUTOINCREMENT: a seq is never reused, even after
// retention has deleted every row, so a client's resume point stays valid.
// No index besides the key: events are read in seq order and retention
// deletes from the oldest end; extra indexes would tax every write.
// phones.adb_state: the last adb state recorded, so phone.state is emitted
// only when it changes (also across a restart).
constexpr std::string_view kV5Events = R"sql(
CREATE TABLE events (
  seq           INTEGER PRIMARY KEY AUTOINCREMENT,
  time          INTEGER NOT NULL,
  kind          TEXT NOT NULL,
  process_id    TEXT,
  queue_item_id TEXT,
  phone_id      TEXT,
  reset_id      TEXT,
  payload       TEXT NOT NULL
);
ALTER TABLE phones ADD COLUMN adb_state TEXT;
)sql";

// GET /phones/{id}/resets pages a phone's reset history newest first by a
// cursor, as GET /processes does: that needs a sequence number that never
// changes and is never reused. The table's implicit rowid is neither (VACUUM
// may renumber it, a deleted last row's id comes back), so the table is
// rebuilt with `seq INTEGER PRIMARY KEY AUTOINCREMENT`, the existing rows
// numbered in their old order (requested_at, then insertion); the index
// serves both a page (phone_id = ? AND seq < ? ORDER BY seq DESC) and each
// phone's latest reset.
constexpr std::string_view kV6ResetSeq = R"sql(
CREATE TABLE phone_resets_v6 (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  reset_id     TEXT NOT NULL UNIQUE,
  phone_id     TEXT NOT NULL,
  trigger      TEXT NOT NULL,
  status       TEXT NOT NULL,
  reason       TEXT,
  requested_by TEXT,
  requested_at INTEGER NOT NULL,
  ended_at     INTEGER,
  steps        TEXT NOT NULL DEFAULT '[]'
);
INSERT INTO phone_resets_v6
  (reset_id, phone_id, trigger, status, reason, requested_by, requested_at, ended_at, steps)
  SELECT reset_id, phone_id, trigger, status, reason, requested_by, requested_at, ended_at, steps
  FROM phone_resets ORDER BY requested_at, rowid;
DROP TABLE phone_resets;
ALTER TABLE phone_resets_v6 RENAME TO phone_resets;
CREATE INDEX phone_resets_by_phone ON phone_resets (phone_id, seq);
)sql";

// phones.attention: why the phone needs a technician ({"reason", "detail",
// "since"} or NULL), so the reason survives a restart. Before, only health
// was stored and every needs_attention phone came back as reset_failed:
// that is what such rows become.
constexpr std::string_view kV7Attention = R"sql(
ALTER TABLE phones ADD COLUMN attention TEXT;
UPDATE phones SET attention = json_object('reason', 'reset_failed', 'detail',
  'a reset failed before the agent was upgraded', 'since', updated_at)
  WHERE health = 'needs_attention';
)sql";

constexpr std::array<std::string_view, 7> kMigrations{kV1,       kV2ForgetEnvValues, kV3Retention, kV4IncrementalVacuum,
                                                      kV5Events, kV6ResetSeq,        kV7Attention};

constexpr std::string_view kNoTransaction = "-- no transaction";

bool autoVacuumIncremental(Db& db) {
  Statement& st = db.prepare("PRAGMA auto_vacuum");
  st.step();
  const bool incremental = st.getInt(0) == 2;
  st.reset();
  return incremental;
}

// VACUUM needs free space of about the database's size; on a disk that has
// none the agent must still start (a full disk is when it is needed most).
// The switch is then tried again at every start until it succeeds.
void switchToIncrementalVacuum(Db& db, std::string_view sql) {
  const auto started = std::chrono::steady_clock::now();
  try {
    db.exec(sql);
  } catch (const SqliteError& e) {
    if (!e.isUnavailable()) throw;
    spdlog::error("store.vacuum_deferred error=\"{}\" auto_vacuum stays off until a start with room for it", e.what());
    return;
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("store.vacuumed auto_vacuum=incremental ms={}", ms);
}

}  // namespace

int userVersion(Db& db) {
  Statement& st = db.prepare("PRAGMA user_version");
  st.step();
  const int v = static_cast<int>(st.getInt(0));
  st.reset();
  return v;
}

std::span<const std::string_view> migrations() { return kMigrations; }

int migrate(Db& db) {
  int version = userVersion(db);
  if (version > static_cast<int>(kMigrations.size())) {
    throw std::runtime_error("database schema version " + std::to_string(version) +
                             " is newer than this agent supports (" + std::to_string(kMigrations.size()) + ")");
  }
  for (; version < static_cast<int>(kMigrations.size()); ++version) {
    const std::string_view sql = kMigrations[static_cast<std::size_t>(version)];
    if (sql.starts_with(kNoTransaction)) {
      switchToIncrementalVacuum(db, sql);
      db.exec("PRAGMA user_version = " + std::to_string(version + 1));
      continue;
    }
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(sql);
      db.exec("PRAGMA user_version = " + std::to_string(version + 1));
      db.exec("COMMIT");
    } catch (...) {
      db.exec("ROLLBACK");
      throw;
    }
  }
  if (!autoVacuumIncremental(db)) switchToIncrementalVacuum(db, kV4IncrementalVacuum);
  return version;
}

}  // namespace phonefarm::store
