#!/bin/bash
# write_behind.sh: writes to files at home go behind after a move (docs/design.md
# "Writes to home files go behind"): they return at once and run at home in order, and
# what the job reads, seeks, syncs and closes sees them. jobs/write_behind_job.c,
# moved a -> b before it writes:
#   records: write() to a file opened before the move (O_APPEND) and to one opened
#     after it, pwrite() behind the offset, lseek back and rewrite, lseek SEEK_END, read
#     back, fsync, close: every result as without mig, and both files at home exactly an
#     undisturbed run's.
#   full: its directory at home is a 1 MiB tmpfs. It writes 1000-byte records, each
#     followed by a pwrite of the count at offset 0, until a call fails: it is told
#     ENOSPC (on a later write, or at fsync or close at the latest), and at home the
#     count names exactly the whole records, with nothing after the failing record (a
#     pwrite issued after it would have fit, and would have said more records than
#     landed, had it run).
#
# usage: write_behind.sh JOB OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-write-behind' (suite cluster) with every path filled in.
JOB=$(realpath "$1")
shift
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_up a b

N=400
mkdir -p "$(jfile ref data)" && touch "$(jfile ref data/go)"
start_job ref plain "$JOB" records @DIR@ @DIR@/go "$N" || cluster_end
start_job records mig "$JOB" records @DIR@ @DIR@/go "$N" || cluster_end

mkdir -p "$(jfile full data/fs)"
if ! hx a mount -t tmpfs -o size=1m wb-full "$(jdir full)/data/fs"; then
  fail "cannot mount a 1 MiB tmpfs on a for the full case"
  cluster_end
fi
start_job full mig "$JOB" full @DIR@/fs @DIR@/go || cluster_end

if hop records a b 3; then
  touch "$(jfile records data/go)"
  wait_job ref 120
  if compare records ref 0; then
    bad=""
    for f in records.dat before.dat; do
      cmp -s "$(jfile ref "data/$f")" "$(jfile records "data/$f")" || bad+=" $f"
    done
    if [[ -z $bad ]]; then
      ok "records: write, O_APPEND, pwrite behind the offset, lseek back and rewrite, read back, fsync and close after a move: both files at home exactly the undisturbed run's ($(wc -c <"$(jfile records data/records.dat)") bytes)"
    else
      fail "records: at home,$bad not the undisturbed run's"
      cmp "$(jfile ref data/records.dat)" "$(jfile records data/records.dat)" | sed 's/^/#     /'
    fi
  fi
fi

if hop full a b 3; then
  touch "$(jfile full data/go)"
  if wait_job full 60 && [[ $STATUS == 0 ]] && grep -qx done "$(jfile full out)"; then
    told=$(grep '^told ' "$(jfile full out)")
    landed=$(python3 - "$(jfile full data/fs/fill.dat)" <<'EOF'
import sys
data = open(sys.argv[1], 'rb').read()
count = int(data[6:14])
def record(i):
    r = bytearray(bytes([ord('a') + i % 26]) * 1000)
    text = b'record %05d ' % i
    r[:len(text)] = text
    r[len(text)] = 0
    r[999] = ord('\n')
    return bytes(r)
body = data[16:]
whole = b''.join(record(i) for i in range(1, count + 1))
rest = body[len(whole):]
if body[:len(whole)] != whole:
    print('records 1..%d not all there as written' % count)
elif len(rest) >= 1000 or rest != record(count + 1)[:len(rest)]:
    print('after the %d records the count names: %d bytes that are not the start of record %d' %
          (count, len(rest), count + 1))
else:
    print('ok %d %d' % (count, len(rest)))
EOF
)
    if [[ $told == *"No space left on device"* && $landed == ok\ * ]]; then
      read -r _ count rest <<<"$landed"
      ok "full: a 1 MiB file system at home: the job was $told; at home the count says $count records, all $count whole and exact, then $rest bytes of the record that failed, nothing written after it"
    else
      fail "full: the job: '${told:-no told line}' (want No space left on device); at home: $landed (want ok)"
      detail "$(jfile full out)" "its stdout"
    fi
  else
    fail "full: status $STATUS, or no 'done' (want 0 and done)"
    detail "$(jfile full out)" "its stdout"
    detail "$(jfile full err)" "its stderr"
  fi
fi
kill_job full
kill_job records
hx a umount "$(jdir full)/data/fs" 2>/dev/null

cluster_end
