// Db and Statement: a thin RAII layer over one SQLite connection with a cache
// of prepared statements keyed by their SQL text. Used only on the store
// thread (see Store); errors are SqliteError exceptions, which the Store turns
// into Result errors for the request path.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

struct sqlite3;
struct sqlite3_stmt;

namespace phonefarm::store {

class SqliteError : public std::runtime_error {
 public:
  SqliteError(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }  // primary result code (SQLITE_FULL, ...)
  // Disk full, database locked/busy, I/O error, read-only, out of memory:
  // conditions of the environment, reported as 503, not as bugs.
  bool isUnavailable() const;

 private:
  int code_;
};

class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Bind by 1-based index.
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, std::string_view value);
  Statement& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
  Statement& bind(int index, const std::string& value) { return bind(index, std::string_view(value)); }
  Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
  Statement& bindNull(int index);
  template <class T>
  Statement& bind(int index, const std::optional<T>& value) {
    return value ? bind(index, *value) : bindNull(index);
  }

  // Steps once: true when a row is available, false when done. Throws SqliteError.
  bool step();
  // Steps to completion (for INSERT/UPDATE/DELETE).
  void run();

  bool isNull(int column) const;
  std::int64_t getInt(int column) const;
  std::string getText(int column) const;
  std::optional<std::int64_t> getOptionalInt(int column) const;
  std::optional<std::string> getOptionalText(int column) const;

  // Clears bindings and resets; the cache does this before handing it out.
  void reset();

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

struct DbOptions {
  std::chrono::milliseconds busy_timeout{5000};
};

class Db {
 public:
  // Opens (creating) the database file with WAL, synchronous=FULL,
  // foreign_keys=ON and the busy timeout. Throws SqliteError.
  static std::unique_ptr<Db> open(const std::filesystem::path& path, const DbOptions& options = {});
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // A cached prepared statement, reset and with cleared bindings.
  Statement& prepare(std::string_view sql);
  // Runs one or more statements without results. Throws SqliteError.
  void exec(std::string_view sql);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  std::int64_t changes() const;
  sqlite3* handle() { return db_; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, std::unique_ptr<Statement>> cache_;
};

}  // namespace phonefarm::store
