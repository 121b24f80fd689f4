#!/bin/bash
# loopback_precopy.sh: pre-copy migration between two shadowd on loopback (no root).
# 1. The `memory` feature program (256 MiB, every page written and checked, earlier
#    pages rewritten as it goes) is migrated A -> B by default - pre-copy, the job
#    running and writing through the rounds - and back B -> A with --stop-and-copy;
#    it must end with PASS and stdout exactly that of an undisturbed run (run beside
#    it; 512 steps of at least 50 ms, held near the end until both moves are done).
# 2. precopy_job (jobs/precopy_job.c), which every step rewrites random pages, moves
#    a page through a pipe with read() into memory and write() from it, and forks a
#    child that writes its copy: migrated A -> B with --precopy and B -> A by default,
#    its steps going on during each migration; it checks every word at the end, which
#    the test asks for (a stop file) after the second move.
# 3. precopy_job where userfaultfd(2) fails (jobs/no_uffd.c, a seccomp filter, as in
#    a container that forbids it): --precopy fails with one line and the job stays;
#    the default falls back to stop-and-copy and its result line says why.
# Each result line must name the mode, the rounds and the bytes sent before and
# during the freeze. B restores a pre-copy hop lazily (a page server on B places the
# pages as the job touches them; its background fill off here): 2. checks that it did.
#
# usage: loopback_precopy.sh SHADOWD MIGCTL LIBMIG MEMORY_FEATURE PRECOPY_JOB NO_UFFD
set -u
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3") memory=$(realpath "$4")
pjob=$(realpath "$5") no_uffd=$(realpath "$6")
source "$(dirname "$0")/lib/loopback_lib.sh" precopy
new_key "$dir/key"
up_shadowd a "$dir/key" pa || exit 1
# B's restores of a pre-copy hop are lazy (migctl/restart_command.cc): without the
# background fill the job's pages stay missing until it (or its child, or the kernel in
# its read()) touches them, or until the next hop's capture asks for them all.
MIG_LAZY_NO_FILL=1 up_shadowd b "$dir/key" pb || exit 1
cd "$dir"

steps_in() { grep -c "$2" "$1"; }
# migrate NAME PID TO PATTERN STEP_PATTERN OUTFILE [FLAGS]: migrates and checks the
# result line against PATTERN and that the job printed steps during the migration.
migrate_checked() {
  local name=$1 jpid=$2 to=$3 want=$4 steppat=$5 out=$6
  shift 6
  local before after rc tries=0
  before=$(steps_in "$out" "$steppat")
  # A job that forks all the time may hold a child at the look or at the freeze: the
  # move is refused in one line and the job runs on whole; a user tries again.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    tries=$((tries + 1))
    A migrate "$jpid" --to "127.0.0.1:$to" "$@" > "$dir/m-$name.out" 2>&1; rc=$?
    [ $rc -ne 0 ] && grep -q 'try again' "$dir/m-$name.out" || break
  done
  after=$(steps_in "$out" "$steppat")
  if [ $rc -eq 0 ] && grep -Eq "^migrated $jpid to 127.0.0.1:$to: frozen [0-9.]+ ms .*; $want" "$dir/m-$name.out"; then
    ok "$name (try $tries): $(sed 's/^migrated [0-9]* to [^ ]* //' "$dir/m-$name.out" | tail -1)"
  else
    bad "$name (exit $rc)" "$dir/m-$name.out" "$dir/a.log" "$dir/b.log"
  fi
  # The job ran while its memory was copied: pre-copy did not stop it.
  if [[ "$want" == pre-copy* ]]; then
    [ "$after" -gt "$((before + 1))" ] && ok "$name: the job went on during the rounds (steps $before -> $after)" \
      || bad "$name: the job made no progress during pre-copy (steps $before -> $after)" "$out"
  fi
}

# --- 1. the memory feature program ---------------------------------------------------
# It holds after STEP 505 until the first move is done and after STEP 509 until the
# second is (feature.h, feature_hold): a slow pre-copy on a loaded machine cannot
# outlast it, and it always has steps left to show it goes on on B.
( MIG_FEATURE_HOLD="505:$dir/moved1,509:$dir/moved2" LD_PRELOAD=$libmig "$memory" 256M 512 \
    > "$dir/memory.out" 2> "$dir/memory.err"; echo "$?" > "$dir/memory.status" ) &
pids+=($!)
wait_line "$dir/memory.out" '^STEP 2$' || bad "memory started" "$dir/memory.out" "$dir/memory.err"
mpid=$(pgrep -f -n "^$memory 256M 512")
( "$memory" 256M 512 > "$dir/memory.ref" 2>&1; echo "$?" > "$dir/memory.ref.status" ) &
pids+=($!)
migrate_checked "memory A -> B (default)" "$mpid" "$pb" \
  "pre-copy, [0-9]+ rounds: [0-9.]+ MiB sent while it ran, [0-9.]+ MiB while frozen" '^STEP' "$dir/memory.out"
: > "$dir/moved1"
n=$(steps_in "$dir/memory.out" '^STEP')
wait_line "$dir/memory.out" "^STEP $((n + 3))$" || bad "memory goes on on B" "$dir/memory.out" "$dir/b.log"
migrate_checked "memory B -> A (--stop-and-copy)" "$mpid" "$pa" \
  "stop-and-copy: [0-9.]+ MiB sent while frozen" '^STEP' "$dir/memory.out" --stop-and-copy
: > "$dir/moved2"
wait_until 120 test -s "$dir/memory.status" || bad "memory ended" "$dir/memory.out" "$dir/memory.err"
wait_until 120 test -s "$dir/memory.ref.status" || bad "memory ended undisturbed" "$dir/memory.ref"
if [ "$(cat "$dir/memory.status" 2>/dev/null)" = 0 ] && [ "$(cat "$dir/memory.ref.status")" = 0 ] && cmp -s "$dir/memory.ref" "$dir/memory.out"; then
  ok "memory: every page exact after pre-copy and back (output same as undisturbed, $(grep '^pages verified' "$dir/memory.out"))"
else
  bad "memory after the migrations (status $(cat "$dir/memory.status" 2>/dev/null))" "$dir/memory.out" "$dir/memory.err" "$dir/b.log"
  diff "$dir/memory.ref" "$dir/memory.out" | head -5
fi

# --- 2. writes, read() into memory and fork during the rounds ---------------------------
( LD_PRELOAD=$libmig "$pjob" 128 20 "$dir/pjob.stop" > "$dir/pjob.out" 2> "$dir/pjob.err"; echo "$?" > "$dir/pjob.status" ) &
pids+=($!)
wait_line "$dir/pjob.out" '^step 5$' || bad "precopy_job started" "$dir/pjob.out" "$dir/pjob.err"
jpid=$(pgrep -f -n "^$pjob 128 20 ")
# precopy_job forks a short-lived child every step (and waits for it): a move that
# finds a child, before or at the freeze, is refused and tried again (migrate_checked);
# one that finds none moves the whole job, so no child is ever left behind on B.
migrate_checked "precopy_job A -> B (--precopy)" "$jpid" "$pb" \
  "pre-copy, [0-9]+ rounds" '^step' "$dir/pjob.out" --precopy
n=$(steps_in "$dir/pjob.out" '^step')
bpid=$(sed -n 's/.* runs here as PID \([0-9]*\)$/\1/p' "$dir/b.log" | tail -1)
# Its memory is not placed inside the freeze: a page server on B holds it (its socket).
if [ "$(id -u)" != 0 ] && [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" != 1 ]; then
  echo "skipped: the lazy restore on B (needs root or vm.unprivileged_userfaultfd = 1; restored eagerly here)"
elif grep -q "@mig-lazy-$bpid\$" /proc/net/unix; then
  ok "precopy_job on B: restored lazily from the image (a page server fills PID $bpid)"
else
  bad "precopy_job on B: no page server for PID ${bpid:-?} (an eager restore)" "$dir/b.log"
fi
wait_line "$dir/pjob.out" "^step $((n + 10))$" || bad "precopy_job goes on on B" "$dir/pjob.out" "$dir/b.log"
# Home: pre-copy, or, when one of its children born on B lives at the look, stop-and-copy
# with them (they come home too, issue 12 step 3).
migrate_checked "precopy_job B -> A (default)" "$jpid" "$pa" \
  "(pre-copy, [0-9]+ rounds|stop-and-copy \(its children born away from home move with it)" '^step' "$dir/pjob.out"
touch "$dir/pjob.stop"
wait_until 120 test -s "$dir/pjob.status" || bad "precopy_job ended" "$dir/pjob.out" "$dir/pjob.err"
steps=$(grep -c '^step ' "$dir/pjob.out")
if [ "$(cat "$dir/pjob.status" 2>/dev/null)" = 0 ] && grep -q "^verified 32768 pages, $steps steps, $steps children, $steps reads$" "$dir/pjob.out" &&
   [ "$(tail -1 "$dir/pjob.out")" = PASS ]; then
  ok "precopy_job: every page exact, $steps children and $steps reads through memory fine across both moves"
else
  bad "precopy_job after the migrations (status $(cat "$dir/pjob.status" 2>/dev/null))" "$dir/pjob.out" "$dir/pjob.err"
fi

# --- 3. no write tracking ---------------------------------------------------------------
( LD_PRELOAD=$libmig "$no_uffd" "$pjob" 8 5 "$dir/nojob.stop" > "$dir/nojob.out" 2> "$dir/nojob.err"
  echo "$?" > "$dir/nojob.status" ) &
pids+=($!)
wait_line "$dir/nojob.out" '^step 3$' || bad "precopy_job under no_uffd started" "$dir/nojob.out" "$dir/nojob.err"
npid=$(pgrep -f -n "^$pjob 8 5 ")
A migrate "$npid" --to "127.0.0.1:$pb" --precopy --only > "$dir/m-nouffd-precopy.out" 2>&1; rc=$?
n=$(steps_in "$dir/nojob.out" '^step')
if [ $rc -ne 0 ] && grep -q "stays where it was: .*pre-copy is not possible: no write tracking: .*userfaultfd" "$dir/m-nouffd-precopy.out" &&
   wait_line "$dir/nojob.out" "^step $((n + 2))$"; then
  ok "--precopy without userfaultfd: refused with one line, the job runs on ($(tail -1 "$dir/m-nouffd-precopy.out" | sed 's/.*failed: //'))"
else bad "--precopy without userfaultfd (exit $rc)" "$dir/m-nouffd-precopy.out" "$dir/nojob.out"; fi
migrate_checked "without userfaultfd, default" "$npid" "$pb" \
  "stop-and-copy \(no write tracking: the job cannot make a userfaultfd [^)]*\): [0-9.]+ MiB sent while frozen" \
  '^step' "$dir/nojob.out" --only
touch "$dir/nojob.stop"
wait_until 60 test -s "$dir/nojob.status" || bad "precopy_job under no_uffd ended" "$dir/nojob.out" "$dir/nojob.err"
[ "$(cat "$dir/nojob.status" 2>/dev/null)" = 0 ] && [ "$(tail -1 "$dir/nojob.out")" = PASS ] \
  && ok "without userfaultfd: the job moved by stop-and-copy ends exact" \
  || bad "precopy_job under no_uffd after the move (status $(cat "$dir/nojob.status" 2>/dev/null))" "$dir/nojob.out" "$dir/nojob.err"

A migrate 999999 --to "127.0.0.1:$pb" --precopy --stop-and-copy > "$dir/m-both.out" 2>&1
grep -q "exclude each other" "$dir/m-both.out" && ok "--precopy with --stop-and-copy is refused with one line" \
  || bad "--precopy --stop-and-copy" "$dir/m-both.out"

[ "$failures" -eq 0 ]
