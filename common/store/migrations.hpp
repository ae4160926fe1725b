// Schema migrations, applied in order at start by `PRAGMA user_version`.
// Each migration runs in one transaction with the user_version bump, so a
// crash mid-migration leaves the previous version intact. One starting with
// "-- no transaction" (the VACUUM that turns on auto_vacuum = INCREMENTAL)
// runs on its own and is idempotent; if the disk has no room for it, start-up
// goes on and it is tried again at the next start.
#pragma once

#include <span>
#include <string_view>

#include "common/store/sqlite_db.hpp"

namespace phonefarm::store {

// The database's schema version (PRAGMA user_version).
int userVersion(Db& db);

// migrations()[i] takes the schema from version i to i+1.
std::span<const std::string_view> migrations();
// Applies every migration above the database's user_version; returns the new
// version. Throws SqliteError, or std::runtime_error when the database is newer
// than this binary knows.
int migrate(Db& db);

}  // namespace phonefarm::store
