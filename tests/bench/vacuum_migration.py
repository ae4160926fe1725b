#!/usr/bin/env python3
# How long migration 3 (PRAGMA auto_vacuum = INCREMENTAL; VACUUM) takes on a
# database at the schema before it (every earlier migration) holding N processes with one queue item each, run with
# the system SQLite (the one the agent links). Usage:
#   tests/bench/vacuum_migration.py [N=1000000] [DB=/var/tmp/pf-vacuum.db]
# The database goes on a real disk (not a tmpfs /tmp); it is removed at the end.
import os, re, sqlite3, sys, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
path = sys.argv[2] if len(sys.argv) > 2 else "/var/tmp/pf-vacuum.db"
src = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../common/store/migrations.cpp")).read()
for f in (path, path + "-wal", path + "-shm"):
    if os.path.exists(f): os.remove(f)

# Every migration before the VACUUM, in order.
before = [sql for _, sql in re.findall(r'constexpr std::string_view (kV\w+) = R"sql\((.*?)\)sql"', src, re.S)
          if not sql.startswith("-- no transaction")]
c = sqlite3.connect(path, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=FULL")
for sql in before:
    c.executescript(sql)
c.execute("BEGIN")
for i in range(N):
    pid = "proc-%08d" % i
    c.execute("INSERT INTO processes(process_id,status,phone_id,account_id,capability_request_id,requested_by,created_at,updated_at) VALUES(?,?,?,?,?,?,?,?)",
              (pid, "succeeded", "phone_%02d" % (i % 50), "account_user095916355", pid, '{"system":"scheduler","user":null,"metadata":{}}', 1795000000000 + i, 1795000000000 + i))
    c.execute("INSERT INTO queue_items(queue_item_id,process_id,position,status,command,env,stop_signal,started_at,ended_at,exit_code) VALUES(?,?,0,'succeeded',?,'{}','SIGTERM',?,?,0)",
              (pid + "-q0", pid, '["/opt/phonefarm/jobs/post.sh","--x"]', 1795000000000 + i, 1795000000000 + i))
c.execute("COMMIT"); c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
size = os.path.getsize(path)
t = time.time()
c.execute("PRAGMA auto_vacuum = INCREMENTAL"); c.execute("VACUUM")
dt = time.time() - t
print("rows: %d processes + %d queue_items, file %.0f MiB, VACUUM %.2f s, auto_vacuum=%d, sqlite %s" % (N, N, size / 2**20, dt, c.execute("PRAGMA auto_vacuum").fetchone()[0], sqlite3.sqlite_version))
for f in (path, path + "-wal", path + "-shm"):
    if os.path.exists(f): os.remove(f)
