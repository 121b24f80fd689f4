#!/bin/bash
# File locks at restart, as a user meets them (docs/kinds/file_lock.md): the feature
# program file_locks (an fcntl WRITE lock on bytes 0-99, an OFD READ lock, a flock
# LOCK_EX on DIR/locked, a checker child) is checkpointed with --stop; then
#  - while python3 holds a flock on DIR/locked, `migctl restart` is refused in one
#    line naming the fd, the file, the flock and python3's PID, and nothing runs;
#  - while python3 holds an fcntl lock on bytes 50-59 (lockf), likewise, naming the
#    fcntl WRITE lock on bytes 0-99 and python3's PID;
#  - once nobody holds them, the restart takes them again and the job finishes as
#    an undisturbed run does (its checker sees every lock every step);
#  - a python3 tree whose parent and child share one open file description with a
#    flock LOCK_EX on it (a restart would make it two descriptions, one of which could
#    not have it) is refused at restart in one line, before any member runs.
# The program is a tree of two (a restart sets their PIDs): root only, else skipped.
# Args: MIGCTL LIBMIG FEATURE_FILE_LOCKS
set -u
migctl=$1 libmig=$2 prog=$3
if (( EUID != 0 )); then
  echo "SKIP: restarting a process tree needs root (clone3 with set_tid)"
  exit 77
fi
py=/usr/bin/python3
[[ -x $py ]] || { echo "SKIP: needs $py"; exit 77; }
source "$(dirname "$0")/../lib/check.sh"
check_setup locks
bad_lines=40

mkdir -p "$dir/ref" "$dir/job"
"$prog" "$dir/ref" 8 > "$dir/ref.out" 2>&1 || bad "the undisturbed run failed" "$dir/ref.out"
# Its output through a pipe read by a cat of this script's (not the job's child).
exec 4> >(cat > "$dir/job.out")
LD_PRELOAD=$libmig "$prog" "$dir/job" 8 >&4 2>"$dir/job.err" 4>&- &
job=$!; pids+=($job)
exec 4>&-
wait_for "STEP 2" grep -qx "STEP 2" "$dir/job.out" || bad "no STEP 2" "$dir/job.err"
"$migctl" checkpoint "$job" -o "$dir/job.img" --stop > "$dir/ckpt.log" 2>&1 || bad "checkpoint" "$dir/ckpt.log"
wait "$job" 2>/dev/null

# refused NAME PATTERN...: restart fails with one line matching every PATTERN, and the
# job printed nothing more.
refused() {
  local name=$1 out rc before p good=1
  shift
  before=$(wc -l < "$dir/job.out")
  out=$("$migctl" restart "$dir/job.img" 2>&1 </dev/null >>"$dir/job.out"); rc=$?
  [[ $rc -ne 0 && $(grep -c . <<<"$out") -eq 1 ]] || good=0
  for p in "$@"; do grep -qF -- "$p" <<<"$out" || good=0; done
  [[ $(wc -l < "$dir/job.out") -eq $before ]] || good=0
  if (( good )); then ok "$name: $out"; else bad "$name (exit $rc): $out" "$dir/job.out"; fi
}

# hold KIND ARGS: python3 holding a lock on DIR/locked until killed; its PID in holder.
hold() {
  "$py" -c '
import fcntl, signal, sys
f = open(sys.argv[2], "r+")
if sys.argv[1] == "flock":
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
else:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 50)
print("held", flush=True)
signal.pause()' "$1" "$dir/job/locked" > "$dir/holder.$1" 2>&1 &
  holder=$!; pids+=($holder)
  wait_for "python3 to hold its $1 lock" grep -q held "$dir/holder.$1" || bad "the holder" "$dir/holder.$1"
}

# --- someone else holds the flock -----------------------------------------------------
hold flock
refused "a flock held by another process" "(flock)" "$dir/job/locked" "PID $holder"
kill -9 "$holder"; wait "$holder" 2>/dev/null

# --- someone else holds an fcntl lock on some of its bytes ------------------------------
hold lockf
refused "an fcntl lock on bytes 50-59 held by another process" "a WRITE lock (fcntl) on bytes 0-99" \
  "$dir/job/locked" "PID $holder"
kill -9 "$holder"; wait "$holder" 2>/dev/null

# --- free: the restart takes them again and the job finishes -----------------------------
"$migctl" restart "$dir/job.img" >> "$dir/job.out" 2>"$dir/restart.err" </dev/null; rc=$?
if [[ $rc -eq 0 ]] && cmp -s "$dir/ref.out" "$dir/job.out"; then
  ok "restarted once the locks were free: its checker saw every lock every step; output as undisturbed"
else
  bad "the restart with the locks free (exit $rc)" "$dir/restart.err" "$dir/job.out"
fi

# --- an exclusive flock shared by two members through one description ----------------------
: > "$dir/shared"
exec 4> >(cat > "$dir/tree.out")
LD_PRELOAD=$libmig "$py" -c '
import fcntl, os, sys, time
f = open(sys.argv[1], "r+")
fcntl.flock(f, fcntl.LOCK_EX)
if os.fork() == 0:
    time.sleep(600)
    os._exit(0)
print("STEP 1", flush=True)
time.sleep(600)' "$dir/shared" >&4 2>"$dir/tree.err" 4>&- &
job=$!; pids+=($job)
exec 4>&-
wait_for "the tree's STEP 1" grep -qx "STEP 1" "$dir/tree.out" || bad "no STEP 1" "$dir/tree.err"
"$migctl" checkpoint "$job" -o "$dir/tree.img" --stop > "$dir/tree.ckpt" 2>&1 || bad "checkpoint of the tree" "$dir/tree.ckpt"
wait "$job" 2>/dev/null
out=$("$migctl" restart "$dir/tree.img" 2>&1 </dev/null >>"$dir/tree.out"); rc=$?
if [[ $rc -ne 0 && $(grep -c . <<<"$out") -eq 1 && $out == *"held by two members of the tree"* ]] &&
   [[ $(grep -c . "$dir/tree.out") -eq 1 ]]; then
  ok "a flock LOCK_EX two members shared: $out"
else
  bad "a flock LOCK_EX two members shared (exit $rc): $out" "$dir/tree.out"
fi

(( fails == 0 )) || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
