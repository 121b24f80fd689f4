#!/bin/bash
# sqlite.sh: a database shared between a moved job and a process at home is never
# corrupted (issue 12, file locks). Debian's python3 (jobs/sqlite_writer.py, under mig)
# inserts rows 1..N into a database in its data directory on a, one transaction each,
# in sqlite's default rollback-journal mode, and is migrated a -> b while a reader on a,
# not under mig (jobs/sqlite_reader.py), reads the same database in a loop: row count,
# sums and highest id in a read transaction. sqlite keeps writer and readers apart with
# fcntl locks on the database file; after the move the job's are taken at home by its
# deputy (rsc/forward_calls.def, "file locks"). Checked as a user sees it: the writer
# ends with status 0 and all N steps; the reader never saw an error or a transaction
# half-written and read while the job ran on b; at home Debian's sqlite3 says
# `PRAGMA integrity_check` ok and every row is there exactly once.
# The same writer on a database in WAL mode moves too: its WAL index (the -shm file) is
# a shared writable mapping of a home file, kept on b as a copy that is written back
# before each lock call on that file and refreshed after each lock taken
# (shim/forward/shared_file_mapping.h). It is moved a -> b -> c -> a while a WAL
# reader on a reads in a loop, and a second writer (jobs/sqlite_wal_late.py) moved
# a -> b before it opens the database writes another table from b beside them (its
# -shm mapped after the move); the same checks: the writers end with every step, the
# reader saw no error nor a half-written transaction, integrity_check ok at home, every
# row once.
#
# usage: sqlite.sh OPTIONS (below); meson runs it as test 'migration-sqlite'
# (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
PY=/usr/bin/python3
SQLITE=/usr/bin/sqlite3
WRITER=$(readlink -f "$(dirname "$0")/jobs/sqlite_writer.py")
READER=$(readlink -f "$(dirname "$0")/jobs/sqlite_reader.py")
if [[ ! -x $PY || ! -x $SQLITE ]]; then
  echo "SKIP: needs Debian's /usr/bin/python3 and /usr/bin/sqlite3 (tests/lib/setup.sh installs them)"
  exit 77
fi
cluster_up a b c

# wrote_all WRITER ROWS LABEL WHERE: the writer job ended with status 0, PASS and all
# ROWS steps (WHERE: how it was moved meanwhile).
wrote_all() {
  if wait_job "$1" 180 && [[ $STATUS == 0 ]] && grep -qx PASS "$(jfile "$1" out)" &&
     [[ $(grep -c '^STEP ' "$(jfile "$1" out)") == "$2" ]]; then
    ok "$3: $4, the reader reading on a, wrote all $2 transactions, status 0"
  else
    fail "$3: status $STATUS, last STEP $(last_step "$1") of $2"
    detail "$(jfile "$1" err)" "its stderr"
  fi
}
# read_clean READER LABEL: the reader job ended with status 0 (it never saw an error
# nor a transaction half-written).
read_clean() {
  if wait_job "$1" 60 && [[ $STATUS == 0 ]]; then
    ok "$2: never saw an error or a half-written transaction: $(tail -n 1 "$(jfile "$1" out)")"
  else
    fail "$2: status $STATUS, what it saw:"
    detail "$(jfile "$1" out)" "its output"
    detail "$(jfile "$1" err)" "its stderr"
  fi
}

ROWS=300
DB=$(jdir sqlwriter)/data/test.db
mkdir -p "$(jfile sqlwriter data)"
hx a "$SQLITE" "$DB" \
  'CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad TEXT NOT NULL);' || fail "sqlite3 could not make the database"

if start_job sqlwriter mig "$PY" "$WRITER" "$DB" "$ROWS" && start_job sqlreader plain "$PY" "$READER" "$DB" "$ROWS"; then
  wait_until 20 grep -q READING "$(jfile sqlreader out)" || fail "the reader did not start reading"
  hop sqlwriter a b
  moved_at=$(last_step sqlwriter)
  ended sqlreader && fail "sqlreader had ended before the writer was on b: it did not read beside the moved job"
  wrote_all sqlwriter "$ROWS" sqlwriter "on b from about STEP ${moved_at:-?}"
  read_clean sqlreader "sqlreader on a"
  kill_job sqlwriter
  kill_job sqlreader
  check=$(hx a "$SQLITE" "$DB" 'PRAGMA integrity_check;' 2>&1)
  if [[ $check == ok ]]; then
    ok "sqlite3 on a: PRAGMA integrity_check says ok"
  else
    fail "sqlite3 on a: PRAGMA integrity_check says: $(head -n 3 <<<"$check" | tr '\n' ' ')"
  fi
  rows=$(hx a "$SQLITE" "$DB" 'SELECT count(*), count(DISTINCT id), min(id), max(id), sum(v) FROM t;' 2>&1)
  want="$ROWS|$ROWS|1|$ROWS|$(( 7 * ROWS * (ROWS + 1) / 2 ))"
  if [[ $rows == "$want" ]]; then
    ok "sqlite3 on a: rows 1..$ROWS each there once, values intact ($rows)"
  else
    fail "sqlite3 on a: count, distinct ids, lowest, highest, sum of values: '$rows', not '$want'"
  fi
fi

# --- WAL mode: moved a -> b -> a while a reader at home reads ------------------------------
WROWS=250
WAL_DB=$(jdir sqlwal)/data/test.db
mkdir -p "$(jfile sqlwal data)"
LROWS=60
hx a "$SQLITE" "$WAL_DB" 'PRAGMA journal_mode=WAL;' \
  'CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad TEXT NOT NULL);' \
  'CREATE TABLE t2(id INTEGER PRIMARY KEY, v INTEGER NOT NULL);' >/dev/null ||
  fail "sqlite3 could not make the WAL database"
# It holds (its write lock taken) at each hop's step until that hop is done (a loaded
# machine let it end before its last hop).
walgo=$(jfile sqlwal data)
if start_job sqlwal mig env "MIG_FEATURE_HOLD=20:@DIR@/go1,80:@DIR@/go2,120:@DIR@/go3" "$PY" "$WRITER" "$WAL_DB" "$WROWS" &&
   start_job sqlwalreader plain "$PY" "$READER" "$WAL_DB" "$WROWS"; then
  wait_until 20 grep -q READING "$(jfile sqlwalreader out)" || fail "the WAL reader did not start reading"
  # A second writer of the same database that opens it only once on b (its -shm mapped
  # there), writing its table t2 while the first writes t.
  late_go=$(jdir sqlwallate)/data/go
  mkdir -p "$(jfile sqlwallate data)"
  if start_job sqlwallate mig "$PY" "$(dirname "$WRITER")/sqlite_wal_late.py" "$WAL_DB" "$LROWS" "$late_go" &&
     hop sqlwallate a b; then
    touch "$(jfile sqlwallate data/go)"
  fi
  hop sqlwal a b 20; moved=$?; touch "$walgo/go1"
  if (( moved == 0 )); then
    on_b=$(last_step sqlwal)
    ended sqlwalreader && fail "sqlwalreader had ended before the writer was on b: it did not read beside the moved job"
    # Some commits made from b (each publishing the index header home) before it comes back.
    if wait_step sqlwal $(( on_b + 40 )) 60; then
      ok "sqlwal (WAL mode): committed from STEP $on_b to $(last_step sqlwal) on b"
      # Moving on: its copy written back before the freeze on b, read again on c.
      hop sqlwal b c 80; moved=$?; touch "$walgo/go2"
      if (( moved == 0 )); then
        on_c=$(last_step sqlwal)
        if wait_step sqlwal $(( on_c + 20 )) 60; then
          ok "sqlwal (WAL mode): committed from STEP $on_c to $(last_step sqlwal) on c"
        else
          fail "sqlwal (WAL mode): on c no STEP $(( on_c + 20 )) within 60 s (last: STEP $(last_step sqlwal))"
        fi
        hop sqlwal c a 120
      fi
    else
      fail "sqlwal (WAL mode): on b no STEP $(( on_b + 40 )) within 60 s (last: STEP $(last_step sqlwal))"
      detail "$(jfile sqlwal err)" "its stderr"
    fi
  fi
  touch "$walgo/go1" "$walgo/go2" "$walgo/go3"
  wrote_all sqlwal "$WROWS" "sqlwal (WAL mode)" "moved a -> b -> c -> a"
  read_clean sqlwalreader "sqlwalreader on a (WAL mode)"
  if wait_job sqlwallate 120 && [[ $STATUS == 0 ]] && grep -qx PASS "$(jfile sqlwallate out)"; then
    ok "sqlwallate (WAL mode): opened the database on b after its move, wrote and read back all $LROWS rows of t2, status 0"
  else
    fail "sqlwallate (WAL mode): status $STATUS, output: $(grep -v '^STEP ' "$(jfile sqlwallate out)" | tail -n 3 | tr '\n' ' ')"
    detail "$(jfile sqlwallate err)" "its stderr"
  fi
  kill_job sqlwal
  kill_job sqlwalreader
  kill_job sqlwallate
  check=$(hx a "$SQLITE" "$WAL_DB" 'PRAGMA integrity_check;' 'SELECT count(*), count(DISTINCT id), min(id), max(id), sum(v) FROM t;' \
    'SELECT count(*), count(DISTINCT id), min(id), max(id), sum(v) FROM t2;' 2>&1)
  want=$'ok\n'"$WROWS|$WROWS|1|$WROWS|$(( 7 * WROWS * (WROWS + 1) / 2 ))"$'\n'"$LROWS|$LROWS|1|$LROWS|$(( 3 * LROWS * (LROWS + 1) / 2 ))"
  if [[ $check == "$want" ]]; then
    ok "sqlite3 on a: the WAL database is intact (integrity_check ok), rows 1..$WROWS of t and 1..$LROWS of t2 each there once"
  else
    fail "sqlite3 on a: the WAL database: '$(tr '\n' ' ' <<<"$check")', not '$(tr '\n' ' ' <<<"$want")'"
  fi
fi

cluster_end
