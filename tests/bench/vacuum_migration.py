#!/usr/bin/env python3
# How long the VACUUM migration (migration 4: PRAGMA auto_vacuum =
# INCREMENTAL; VACUUM) takes on a database at the schema before it
# (migrations 1-3, applied in kMigrations' order) holding N processes with
# one queue item each, run with the system SQLite (the one the agent links).
# Usage:
#   tests/bench/vacuum_migration.py [N=1000000] [DB=/var/tmp/pf-vacuum.db]
#   tests/bench/vacuum_migration.py --smoke   (N=1000 in a temp dir; ctest, label "bench")
# The database goes on a real disk (not a tmpfs /tmp); it is removed at the end.
# Exits 1 if the migrations read from common/store/migrations.cpp are not what
# this measures (the VACUUM one, and the three before it).
import os, re, sqlite3, sys, tempfile, time

smoke = sys.argv[1:] == ["--smoke"]
tmpdir = tempfile.TemporaryDirectory() if smoke else None
N = 1000 if smoke else int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
path = os.path.join(tmpdir.name, "pf-vacuum.db") if smoke else sys.argv[2] if len(sys.argv) > 2 else "/var/tmp/pf-vacuum.db"
src = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../common/store/migrations.cpp")).read()
for f in (path, path + "-wal", path + "-shm"):
    if os.path.exists(f): os.remove(f)

def fail(why):
    print("vacuum_migration.py: " + why, file=sys.stderr)
    sys.exit(1)

# The migrations in the order the store applies them (kMigrations), and the
# one that runs outside a transaction: the VACUUM. Only those before it run
# here; the VACUUM one itself is what is timed.
sql_of = dict(re.findall(r'constexpr std::string_view (kV\w+) = R"sql\((.*?)\)sql"', src, re.S))
order = re.search(r'kMigrations\{(.*?)\}', src, re.S)
if not order: fail("no kMigrations array in migrations.cpp")
names = [n.strip() for n in order.group(1).split(",") if n.strip()]
if any(n not in sql_of for n in names): fail("kMigrations names an unknown migration: %s" % names)
vacuums = [i for i, n in enumerate(names) if sql_of[n].startswith("-- no transaction") and "VACUUM;" in sql_of[n]]
if len(vacuums) != 1: fail("expected exactly one VACUUM migration, found %s" % [names[i] for i in vacuums])
at = vacuums[0]
if at != 3: fail("the VACUUM is migration %d (%s), not 4: update this script's text" % (at + 1, names[at]))
before = names[:at]
print("applying migrations 1-%d (%s), then timing migration %d (%s)" % (at, ", ".join(before), at + 1, names[at]))

c = sqlite3.connect(path, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=FULL")
for name in before:
    c.executescript(sql_of[name])
c.execute("BEGIN")
for i in range(N):
    pid = "proc-%08d" % i
    c.execute("INSERT INTO processes(process_id,status,phone_id,account_id,capability_request_id,requested_by,created_at,updated_at) VALUES(?,?,?,?,?,?,?,?)",
              (pid, "succeeded", "phone_%02d" % (i % 50), "account_user095916355", pid, '{"system":"scheduler","user":null,"metadata":{}}', 1795000000000 + i, 1795000000000 + i))
    c.execute("INSERT INTO queue_items(queue_item_id,process_id,position,status,command,env,stop_signal,started_at,ended_at,exit_code) VALUES(?,?,0,'succeeded',?,'{}','SIGTERM',?,?,0)",
              (pid + "-q0", pid, '["/opt/phonefarm/jobs/post.sh","--x"]', 1795000000000 + i, 1795000000000 + i))
c.execute("COMMIT"); c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
if c.execute("PRAGMA auto_vacuum").fetchone()[0] != 0: fail("auto_vacuum is on before the VACUUM migration")
size = os.path.getsize(path)
t = time.time()
c.executescript(sql_of[names[at]])  # outside a transaction, as the store runs it
dt = time.time() - t
mode = c.execute("PRAGMA auto_vacuum").fetchone()[0]
print("rows: %d processes + %d queue_items, file %.0f MiB, VACUUM %.2f s, auto_vacuum=%d, sqlite %s" % (N, N, size / 2**20, dt, mode, sqlite3.sqlite_version))
c.close()
for f in (path, path + "-wal", path + "-shm"):
    if os.path.exists(f): os.remove(f)
if mode != 2: fail("auto_vacuum is %d after the migration, not 2 (INCREMENTAL)" % mode)
