// Schema migrations, applied in order at start by `PRAGMA user_version`.
// Each migration runs in one transaction with the user_version bump, so a
// crash mid-migration leaves the previous version intact.
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
