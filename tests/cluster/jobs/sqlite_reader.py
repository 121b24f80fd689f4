# sqlite_reader.py DB ROWS: the reader at home of migration-sqlite (sqlite.sh), run
# without mig. Reads DB in a loop on one connection, each time in a read transaction:
# the row count, the sum of ids and of values and the highest id must agree (rows
# 1..k, k = the highest, each committed whole). Stops once it has seen all ROWS.
# Prints "reads N, last count K" and exits 0, or prints each error or disagreement
# (sqlite's message, e.g. "database disk image is malformed") and exits 1.
import sqlite3
import sys

db, rows = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db, timeout=120, isolation_level=None)
reads = errors = 0
count = 0
print("READING", flush=True)
while count < rows and errors < 20:
    try:
        con.execute("BEGIN")
        count, ids, vals, top = con.execute("SELECT count(*), total(id), total(v), max(id) FROM t").fetchone()
        con.execute("COMMIT")
        top = top or 0
        if count != top or ids != top * (top + 1) // 2 or vals != 7 * ids:
            errors += 1
            print("disagreement: count %d, sum of ids %d, sum of values %d, highest id %d" % (count, ids, vals, top),
                  flush=True)
    except sqlite3.Error as e:
        errors += 1
        print("error: %s" % e, flush=True)
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
    reads += 1
print("reads %d, last count %d" % (reads, count), flush=True)
sys.exit(1 if errors else 0)
