#!/bin/bash
# code_after_move.sh: code and data loaded after a move, with the default shadowd.
# Debian's python3 (jobs/import_after_move.py) runs on a and moves a -> b; only then it
# imports sqlite3, json, decimal, ctypes, bz2 and lzma for the first time (each a C
# extension dlopen maps), uses each, and maps a data file of its home directory on a
# (read-only shared, private with a write). Checked as a user sees it: what it computed
# is what an undisturbed run on a computed; json has its C scanner; the private write
# did not reach the file; a write through a writable shared mapping of a home file (a
# lock held on it) is in the file at home after msync (shim/forward/shared_file_mapping.h); a python3 child it runs imports and makes
# a temporary file in /tmp (at home); gcc builds and links a program (ld loads its
# LTO plugin); on b, the system's libraries were mapped from b's own files (the
# same as a's), while a library whose copy on b differs from
# a's (same size and mtime, one byte changed; b's view of the directory is a bind
# mount only b has) was loaded from home (a's copy, mapped by copy: not a file
# mapping on b). A job that mapped home files before the move (read-only shared,
# private, a library only home has) reads the same through them after it, and a
# library b has its own copy of (another inode) is mapped from b's copy; one that
# maps a file shared and writable is not moved (one line, before the freeze).
# A shell moved a -> b builds a program with gcc -flto (six processes deep, all born on
# b): status 0, nothing on stderr, the program runs on a.
#
# usage: code_after_move.sh OPTIONS (below); meson runs it as test
# 'migration-code-after-move' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
PY=/usr/bin/python3
JOB=$(readlink -f "$(dirname "$0")/jobs/import_after_move.py")
LIBM=$(readlink -f /lib/x86_64-linux-gnu/libm.so.6 2>/dev/null)
if [[ ! -x $PY || ! -f $LIBM ]]; then
  echo "SKIP: needs Debian's /usr/bin/python3 and /lib/x86_64-linux-gnu/libm.so.6"
  exit 77
fi
cluster_up a b

# A library under a system directory (/opt) whose copy differs on b: same size and
# mtime, its last byte (in the section headers, which loading does not read) changed.
LIBDIR=/opt/mig-code-after-move.$$
trap 'rm -rf "$LIBDIR" "$LIBDIR.b"; cleanup' EXIT
mkdir -p "$LIBDIR" "$LIBDIR.b"
cp "$LIBM" "$LIBDIR/libdiff.so"
cp "$LIBM" "$LIBDIR.b/libdiff.so"
size=$(stat -c %s "$LIBM")
last=$(tail -c 1 "$LIBM" | od -An -tu1 | tr -d ' ')
printf "\\$(printf '%03o' $(( (last + 1) % 256 )))" | dd of="$LIBDIR.b/libdiff.so" bs=1 seek=$((size - 1)) conv=notrunc status=none
# ... and one that b has too, the same file (with b's own inode).
cp "$LIBM" "$LIBDIR/libsame.so"
cp "$LIBM" "$LIBDIR.b/libsame.so"
touch -r "$LIBM" "$LIBDIR/libdiff.so" "$LIBDIR.b/libdiff.so" "$LIBDIR/libsame.so" "$LIBDIR.b/libsame.so"
if ! hx b mount --bind "$LIBDIR.b" "$LIBDIR" || ! hx b cmp -s "$LIBDIR/libdiff.so" "$LIBDIR.b/libdiff.so" ||
   cmp -s "$LIBDIR/libdiff.so" "$LIBDIR.b/libdiff.so"; then
  fail "could not give b its own copy of $LIBDIR (a bind mount in b's mount namespace)"
  cluster_end
fi

make_data() {  # make_data NAME: a 3-page-and-a-bit data file in the job's data dir
  "$PY" -c 'import sys; sys.stdout.buffer.write(bytes((i * 7 + i // 256) % 251 for i in range(3 * 4096 + 100)))' \
    >"$(jfile "$1" data/data.bin)"
}
mkdir -p "$(jfile pyref data)" "$(jfile py data)"
make_data pyref
make_data py
cp "$(jfile py data/data.bin)" "$T/data.bin.orig"

start_job pyref plain "$PY" "$JOB" @DIR@ "$LIBDIR/libdiff.so"
touch "$(jfile pyref data/go)"
start_job py mig "$PY" "$JOB" @DIR@ "$LIBDIR/libdiff.so" || cluster_end
if hop py a b; then
  touch "$(jfile py data/go)"
  wait_job pyref 60
  ref_status=$STATUS
  wait_job py 60
  if [[ $STATUS == 0 && $ref_status == 0 ]] && cmp -s "$(jfile pyref data/result.txt)" "$(jfile py data/result.txt)"; then
    ok "python3 moved a -> b, then imported sqlite3, json, decimal, ctypes, bz2, lzma and mapped a home file: results as the undisturbed run's ($(wc -l <"$(jfile py data/result.txt)") lines, status 0)"
  else
    fail "python3 after the move: status $STATUS (undisturbed $ref_status), results differ from the undisturbed run's"
    diff "$(jfile pyref data/result.txt)" "$(jfile py data/result.txt)" 2>&1 | head -n 20 | sed 's/^/#     /'
    detail "$(jfile py err)" "its stderr"
    detail "$(jfile pyref err)" "the undisturbed run's stderr"
  fi
  want=("json C scanner: True True" "decimal: 0.1428571428571428571428571428571428571429, C module: True"
        "sqlite3 3: (100, 'row 99')" "libdiff has cos: True" "bz2: 5600 -> " "lzma: round trip True"
        "ctypes: sqrt(16) = 4.0" "sqlite3 already loaded: False" "lzma already loaded: False"
        "mapped private, written: b'PRIVATE!" "child: status 0, 42 True scratch ''"
        "gcc: status 0, '', an ELF program: True")
  missing=""
  for w in "${want[@]}"; do grep -qF "$w" "$(jfile py data/result.txt)" 2>/dev/null || missing+=" '$w';"; done
  if [[ -z $missing ]]; then
    ok "python3 after the move: each module loaded for the first time and working, json with its C scanner, home's libdiff.so (has cos)"
  else
    fail "python3 after the move: result.txt lacks$missing"
    detail "$(jfile py data/result.txt)" "result.txt"
  fi
  if [[ $(hx a "$(jdir py)/data/hello" 2>&1) == "hello from gcc" ]]; then
    ok "the program gcc built and linked on b (in the job's directory on a) runs on a"
  else
    fail "the program gcc built on b does not run on a: $(hx a "$(jdir py)/data/hello" 2>&1 | head -n 3)"
  fi
  if cmp -s "$T/data.bin.orig" "$(jfile py data/data.bin)"; then
    ok "the private mapping's write did not reach data.bin at home"
  else
    fail "data.bin at home changed: a private mapping's write reached the file"
  fi
  sw=$(cat "$(jfile py data/shared_write.txt)" 2>/dev/null)
  want_sw="mapped, the file has b'through the map!'"
  if [[ $sw == "$want_sw" && $(cat "$(jfile pyref data/shared_write.txt)") == "$want_sw" ]]; then
    ok "a writable shared mapping of a home file after the move: its write (msync) is in the file at home, as in the undisturbed run"
  else
    fail "a writable shared mapping of a home file after the move: '$sw' (want \"$want_sw\", as the undisturbed run: '$(cat "$(jfile pyref data/shared_write.txt)")')"
  fi
  maps=$(jfile py data/maps.txt)
  sqlite_file=$(grep -c '/libsqlite3\.so' "$maps" 2>/dev/null)
  diff_file=$(grep -c '/libdiff\.so' "$maps" 2>/dev/null)
  if (( sqlite_file > 0 && diff_file == 0 )); then
    ok "on b: libsqlite3 mapped from b's own file (the same as a's: $sqlite_file mappings), libdiff.so (differs on b) not mapped from b's file but by copy from home"
  else
    fail "on b: libsqlite3 file mappings $sqlite_file (want > 0), libdiff.so file mappings $diff_file (want 0)"
    grep -E 'libsqlite3|libdiff|_sqlite3' "$maps" 2>/dev/null | head -n 10 | sed 's/^/#     /'
  fi
fi

# --- files mapped before the move ----------------------------------------------------------
# A read-only shared and a private mapping of a home data file, and a library only home
# has (in the job's directory), travel as private memory; a job that maps a file shared
# and writable, holding a lock on it, moves with a copy kept coherent with the file at
# home; without a lock (and an fd) it is refused in one line before the freeze.
HELD=$(readlink -f "$(dirname "$0")/jobs/mapped_before_move.py")
for j in held heldref sharedrw sharednofd; do
  mkdir -p "$(jfile "$j" data)"
  make_data "$j"
  cp "$LIBM" "$(jfile "$j" data/libhome.so)"
done
start_job heldref plain "$PY" "$HELD" @DIR@ plain "$LIBDIR/libsame.so"
touch "$(jfile heldref data/go)"
if start_job held mig "$PY" "$HELD" @DIR@ plain "$LIBDIR/libsame.so" && hop held a b; then
  touch "$(jfile held data/go)"
  wait_job heldref 60
  ref_status=$STATUS
  wait_job held 60
  if [[ $STATUS == 0 && $ref_status == 0 ]] && grep -qx "libsame sqrt(16) = 4.0" "$(jfile held data/result.txt)" &&
     cmp -s "$(jfile heldref data/result.txt)" "$(jfile held data/result.txt)"; then
    ok "held: its shared read-only and private mappings of data.bin, libhome.so (only on a) and libsame.so (b has its own copy) read after a -> b as in the undisturbed run"
  else
    fail "held: status $STATUS (undisturbed $ref_status); what it read after the move differs from the undisturbed run"
    diff "$(jfile heldref data/result.txt)" "$(jfile held data/result.txt)" 2>&1 | head -n 10 | sed 's/^/#     /'
    detail "$(jfile held err)" "its stderr"
  fi
  cmp -s "$T/data.bin.orig" "$(jfile held data/data.bin)" && ok "held: data.bin at home unchanged by the private write" ||
    fail "held: data.bin at home changed"
  maps=$(jfile held data/maps.txt)
  same_file=$(grep -c '/libsame\.so' "$maps" 2>/dev/null)
  home_file=$(grep -c '/libhome\.so' "$maps" 2>/dev/null)
  if (( same_file > 0 && home_file == 0 )); then
    ok "held on b: libsame.so mapped from b's own copy (another inode, same size and mtime), libhome.so (only on a) as private memory"
  else
    fail "held on b: libsame.so file mappings ${same_file:-none} (want > 0), libhome.so file mappings ${home_file:-none} (want 0)"
  fi
fi
# A shared writable mapping (with its fd open, as Python's mmap keeps one) moves: a copy
# on b kept coherent with data.bin at home (shim/forward/shared_file_mapping.h).
if start_job sharedrw mig "$PY" "$HELD" @DIR@ shared-writable "$LIBDIR/libsame.so" && wait_step sharedrw 3 30; then
  migrate sharedrw b
  if (( MIG_RC == 0 )) && [[ $(host_of "$(where sharedrw)") == b ]]; then
    ok "sharedrw: moved a -> b with data.bin mapped shared and writable: $(migrated_line)"
  else
    fail "sharedrw: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")(want the job moved to b)"
  fi
  touch "$(jfile sharedrw data/go)"
  wait_job sharedrw 60
  result=$(jfile sharedrw data/result.txt)
  ro16=$(sed -n 's/^shared read-only: [0-9]* bytes, \(.*\) \.\.\. .*/\1/p' "$result" 2>/dev/null)
  if [[ $STATUS == 0 ]] && grep -qF "shared writable: b'PRIVATE!" "$result" 2>/dev/null; then
    fail "sharedrw: the private write showed through the shared mapping"
  elif [[ $STATUS == 0 && -n $ro16 ]] && grep -qxF "shared writable: $ro16" "$result"; then
    ok "sharedrw: on b it read data.bin through its shared writable mapping as through the read-only one: $ro16"
  else
    fail "sharedrw: after the move: status $STATUS, result: $(tr '\n' ' ' <"$result" 2>/dev/null)"
    detail "$(jfile sharedrw err)" "its stderr"
  fi
  cmp -s "$T/data.bin.orig" "$(jfile sharedrw data/data.bin)" && ok "sharedrw: data.bin at home unchanged (nothing written through the mapping)" ||
    fail "sharedrw: data.bin at home changed though the job wrote nothing through its shared mapping"
fi

# Without a lock held through an fd of the file open for writing there is nothing to
# keep the copy in step at: the move is refused in one line before anything is frozen,
# and the job runs on at a.
if start_job sharednofd mig "$PY" "$HELD" @DIR@ shared-writable-no-fd "$LIBDIR/libsame.so" && wait_step sharednofd 3 30; then
  migrate sharednofd b
  if one_line_reason && grep -q "data.bin shared and writable without a lock on it" "$MIG_ERR" &&
     job_at_home sharednofd "$(readlink -f "$PY")" && [[ $(host_of "$(where sharednofd)") == a ]]; then
    ok "sharednofd: migrate refused with one line, the job still runs on a: $(cat "$MIG_ERR")"
  else
    fail "sharednofd: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")(want one line naming data.bin shared and writable without a lock, the job still on a)"
  fi
  touch "$(jfile sharednofd data/go)"
  wait_job sharednofd 60
  if [[ $STATUS == 0 ]] && grep -q "^shared writable, no fd: " "$(jfile sharednofd data/result.txt)"; then
    ok "sharednofd: after the refused move it finished on a (status 0)"
  else
    fail "sharednofd: after the refused move: status $STATUS"
    detail "$(jfile sharednofd err)" "its stderr"
  fi
fi

# --- gcc -flto after a move ----------------------------------------------------------------
# A shell job moved a -> b runs gcc -flto (jobs/lto_after_move.sh): six processes deep,
# all born on b, each waiting for its children (the deepest once got their parent's own
# virtual PID: "failed to get exit status: No child processes"), ld holding its output
# open while the lto-wrapper it runs closes what it inherited (once ld's own file at
# home: "final link failed: Bad file descriptor").
LTO=$(readlink -f "$(dirname "$0")/jobs/lto_after_move.sh")
if ! command -v gcc >/dev/null; then
  fail "gcc -flto after a move: no gcc on this machine (tests/lib/setup.sh installs it)"
# --only: the shell's `sleep` between steps is a child it has most of the time; it
# stays at home (the shell waits for it through home), gcc's tree is born on b.
elif HOP_ARGS=(--only) && start_job lto mig /bin/bash "$LTO" @DIR@ && hop lto a b; then
  touch "$(jfile lto data/go)"
  wait_job lto 120
  got=$(tr -d '\r' <"$(jfile lto out)" | grep -av '^STEP ')
  if [[ $STATUS == 0 && $got == "gcc -flto status 0" && ! -s $(jfile lto err) ]]; then
    ok "gcc -flto on b after a -> b: status 0, nothing on stderr"
  else
    fail "gcc -flto on b after a -> b: job status $STATUS, output '${got//$'\n'/ | }'"
    detail "$(jfile lto err)" "its stderr"
  fi
  if [[ $(hx a "$(jdir lto)/data/prog" 2>&1) == "lto says 42" ]]; then
    ok "the program gcc -flto built on b (in the job's directory on a) runs on a: lto says 42"
  else
    fail "the program gcc -flto built on b does not run on a: $(hx a "$(jdir lto)/data/prog" 2>&1 | head -n 3)"
  fi
fi

kill_job py
kill_job pyref
kill_job lto
kill_job held
kill_job heldref
kill_job sharedrw
cluster_end
