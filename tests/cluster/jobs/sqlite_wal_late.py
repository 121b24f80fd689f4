# sqlite_wal_late.py DB ROWS GO: a job of migration-sqlite (sqlite.sh) that opens a WAL
# database only after it has moved, so its WAL index (DB-shm) is mapped on the job's
# new host (a shared writable mapping of a home file made after the move). Prints
# "STEP n" every 20 ms until the file GO exists, then inserts rows 1..ROWS into table
# t2 of DB, one transaction each, beside the other writer of the same database (its
# table t) and a reader at home; after each commit it reads t2 back (count and sum
# must be those of rows 1..i) and prints "ROW i"; PASS at the end, or the first
# disagreement and exit 1.
import os
import sqlite3
import sys
import time

db, rows, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
step = 0
while not os.path.exists(go):
    step += 1
    print("STEP %d" % step, flush=True)
    time.sleep(0.02)
con = sqlite3.connect(db, timeout=120, isolation_level=None)
mode = con.execute("PRAGMA journal_mode").fetchone()[0]
if mode != "wal":
    print("journal mode %s, not wal" % mode, flush=True)
    sys.exit(1)
for i in range(1, rows + 1):
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t2(id, v) VALUES (?, ?)", (i, i * 3))
    time.sleep(0.01)
    con.execute("COMMIT")
    count, total = con.execute("SELECT count(*), total(v) FROM t2").fetchone()
    if count != i or total != 3 * i * (i + 1) // 2:
        print("after row %d: count %d, sum %d" % (i, count, total), flush=True)
        sys.exit(1)
    print("ROW %d" % i, flush=True)
con.close()
print("PASS", flush=True)
