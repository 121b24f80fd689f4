# sqlite_writer.py DB ROWS: the job of migration-sqlite (sqlite.sh). Inserts rows
# 1..ROWS into table t of DB, one transaction each (a row of a few hundred bytes, so
# the b-tree splits pages as it grows), printing "STEP i" after each commit and PASS
# at the end. Each transaction stays open 20 ms (a writer paced like a logger), so a
# move mostly finds it holding its write lock. Also the WAL-mode job (sqlite.sh).
# MIG_FEATURE_HOLD=K:PATH[,K:PATH...] (the feature programs' feature_hold): after STEP K,
# inside the next transaction (its write lock held), wait until PATH exists, at most
# 600 s: the test's hop happens there, and a loaded machine cannot let the job end first.
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "features"))
from feature_hold import feature_hold

db, rows = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db, timeout=120, isolation_level=None)
# In WAL mode, checkpoint every 50 frames (not 1000): the test then also sees the WAL
# copied back into the database and started over from its first frame (the index's
# hash tables rewritten) while readers at home read. No effect in rollback mode.
con.execute("PRAGMA wal_autocheckpoint=50")
for i in range(1, rows + 1):
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t(id, v, pad) VALUES (?, ?, ?)", (i, i * 7, ("%06d" % i) * 50))
    feature_hold(i - 1)
    time.sleep(0.02)
    con.execute("COMMIT")
    print("STEP %d" % i, flush=True)
con.close()
print("PASS", flush=True)
