// Db and Statement: the SQLite C API behind RAII and exceptions. Every failure
// becomes a SqliteError carrying the primary result code, so the Store can
// tell an environment failure (disk full, locked, I/O) from a bug.
#include "common/store/sqlite_db.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <string>

#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::store {
namespace {

// The primary code classifies the failure; the extended code only refines it
// (SQLITE_IOERR_FSYNC is still an I/O error).
[[noreturn]] void throwSqlite(sqlite3* db, int rc, std::string_view context) {
  std::string message(context);
  message += ": ";
  message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  throw SqliteError(rc & 0xff, message);
}

void check(sqlite3* db, int rc, std::string_view context) {
  if (rc != SQLITE_OK) throwSqlite(db, rc, context);
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

// The store holds job env values until their items end: its files are the
// owner's only (0600), whatever the umask. Created so before SQLite opens the
// database, whose -wal and -shm SQLite then creates with the database's
// mode; ones an older agent or a crash left behind are tightened too.
void restrictToOwner(const std::filesystem::path& path) {
  const std::string& db = path.native();
  if (db.empty() || db == ":memory:" || db.starts_with("file:")) return;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string file = db + suffix;
    const bool main = *suffix == '\0';
    const os::FileDescriptor fd(
        ::open(file.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (main ? O_CREAT : 0), 0600));
    if (!fd) {
      if (!main && errno == ENOENT) continue;
      throw SqliteError(SQLITE_CANTOPEN, "open " + file + ": " + os::errnoText());
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || ((st.st_mode & 07777) != 0600 && ::fchmod(fd.get(), 0600) != 0)) {
      throw SqliteError(SQLITE_PERM, "chmod 0600 " + file + ": " + os::errnoText());
    }
  }
}

}  // namespace

bool SqliteError::isUnavailable() const {
  switch (code_) {
    case SQLITE_FULL:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return true;
    default:
      return false;
  }
}

// ---- Statement ----

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int index, std::int64_t value) {
  check(db_, sqlite3_bind_int64(stmt_, index, value), "bind");
  return *this;
}

Statement& Statement::bind(int index, std::string_view value) {
  // An empty string_view may have a null data(); SQLite would bind that as
  // NULL, not as ''.
  const char* data = value.data() != nullptr ? value.data() : "";
  check(db_, sqlite3_bind_text64(stmt_, index, data, value.size(), SQLITE_TRANSIENT, SQLITE_UTF8), "bind");
  return *this;
}

Statement& Statement::bindNull(int index) {
  check(db_, sqlite3_bind_null(stmt_, index), "bind");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throwSqlite(db_, rc, sqlite3_sql(stmt_));
}

void Statement::run() {
  while (step()) {
  }
}

bool Statement::isNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

std::int64_t Statement::getInt(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::getText(int column) const {
  // column_text before column_bytes: bytes then describes the UTF-8 form.
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return {};  // NULL, or an empty blob
  const int size = sqlite3_column_bytes(stmt_, column);
  return std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(size));
}

std::optional<std::int64_t> Statement::getOptionalInt(int column) const {
  if (isNull(column)) return std::nullopt;
  return getInt(column);
}

std::optional<std::string> Statement::getOptionalText(int column) const {
  if (isNull(column)) return std::nullopt;
  return getText(column);
}

void Statement::reset() {
  // reset() repeats the last step's error, which was already thrown.
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

// ---- Db ----

std::unique_ptr<Db> Db::open(const std::filesystem::path& path, const DbOptions& options) {
  // Memory statistics put a process-wide mutex around every SQLite malloc;
  // nothing here reads them. Must precede sqlite3_initialize (once).
  static const bool configured = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)configured;
  restrictToOwner(path);
  sqlite3* raw = nullptr;
  // NOMUTEX: the connection lives on the store thread only.
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<Db> db(new Db(raw));  // open_v2 hands out a handle even on failure; close it
  if (rc != SQLITE_OK) throwSqlite(raw, rc, "open " + path.string());
  sqlite3_extended_result_codes(raw, 1);
  // Before the pragmas: switching to WAL needs a lock another process may hold.
  check(raw, sqlite3_busy_timeout(raw, static_cast<int>(options.busy_timeout.count())), "busy_timeout");

  Statement& mode = db->prepare("PRAGMA journal_mode=WAL");
  const std::string got = mode.step() ? mode.getText(0) : std::string();
  mode.reset();
  // SQLite answers with the mode it is in rather than failing (e.g. "memory"
  // for in-memory databases); durability-before-ack relies on WAL.
  if (!equalsIgnoreCase(got, "wal")) {
    throw SqliteError(SQLITE_ERROR, "open " + path.string() + ": journal_mode=WAL refused (mode is '" + got + "')");
  }
  // secure_delete=FAST: content a write removes (job env values, once their
  // item ends) is zeroed in its page rather than left in the file.
  db->exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=FAST");
  // A rack's state fits in memory; the default 2 MiB page cache made every
  // lookup past it a pread(2), which showed up in the cancel profile.
  db->exec("PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY");
  return db;
}

Db::~Db() {
  cache_.clear();  // finalize before close
  sqlite3_close_v2(db_);
}

Statement& Db::prepare(std::string_view sql) {
  std::string key(sql);
  if (auto it = cache_.find(key); it != cache_.end()) {
    it->second->reset();
    return *it->second;
  }
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  check(db_, sqlite3_prepare_v3(db_, key.data(), static_cast<int>(key.size()), SQLITE_PREPARE_PERSISTENT, &stmt, &tail),
        key);
  if (stmt == nullptr) throw SqliteError(SQLITE_MISUSE, "prepare: no statement in '" + key + "'");
  auto owned = std::make_unique<Statement>(db_, stmt);
  // A second statement would be silently ignored; only whitespace and
  // comments may follow (they prepare to nothing).
  sqlite3_stmt* extra = nullptr;
  const std::size_t consumed = static_cast<std::size_t>(tail - key.data());
  check(db_, sqlite3_prepare_v2(db_, tail, static_cast<int>(key.size() - consumed), &extra, nullptr), key);
  if (extra != nullptr) {
    sqlite3_finalize(extra);
    throw SqliteError(SQLITE_MISUSE, "prepare: more than one statement in '" + key + "' (use exec)");
  }
  Statement& ref = *owned;
  cache_.emplace(std::move(key), std::move(owned));
  return ref;
}

void Db::exec(std::string_view sql) {
  const std::string text(sql);
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = text + ": " + (error != nullptr ? error : sqlite3_errstr(rc));
    sqlite3_free(error);
    throw SqliteError(rc & 0xff, message);
  }
}

std::int64_t Db::changes() const { return sqlite3_changes64(db_); }

}  // namespace phonefarm::store
