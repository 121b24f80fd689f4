#!/usr/bin/env bash
# run_feature.sh: runs one program of the feature suite undisturbed or under
# checkpoint/restart and checks that its stdout and exit status are exactly
# those of an undisturbed run without mig.
#
# usage: run_feature.sh --migctl PATH --shim PATH --mode MODE [--at WHEN]
#            [--timeout S] [--status N] [--datagen PATH --data NAME=SIZE[,text|binary]]...
#            [--reference-first]
#            [--keep] -- PROGRAM ARGS...
#
#   --mode plain          run PROGRAM without mig (the reference), then under
#                         LD_PRELOAD=SHIM; both must match. The LD_PRELOAD run
#                         is skipped (not failed) while SHIM is '' or missing.
#   --mode restart        the reference, then a run under LD_PRELOAD that is
#                         checkpointed at WHEN with `migctl checkpoint PID -o
#                         IMG --stop`; once it has ended, `migctl restart IMG`
#                         continues it. Its output, appended to what the first
#                         run printed, and its exit status must match.
#   --mode restart-twice  as restart, then the same image is restarted a second
#                         time (prefix + its own continuation must match too).
#   --mode restart-chain  as restart, then the restarted process is checkpointed
#                         again at AT2 (--at2, by its virtual PID) and that image
#                         restarted: what a migration A -> B -> C does.
#   --mode concurrent     the reference, then a run under LD_PRELOAD checkpointed at
#                         WHEN without --stop: the checkpoint must be concurrent (the
#                         job runs on while its memory is written) and the job must
#                         end as the reference did; then `migctl restart IMG` must
#                         print the rest of the reference's output from a point at or
#                         after WHEN, and end with its status.
#   --at2 WHEN            the second moment of restart-chain. A step K: the runs
#                         under mig get MIG_FEATURE_HOLD=K:FILE and wait after
#                         STEP K until the harness makes FILE (after the second
#                         checkpoint), so the job is still there to checkpoint
#                         however near its end K is (feature.h, feature_hold).
#                         read:N: no hold (programs nobody here wrote); choose N
#                         well before the end.
#   --at WHEN             K: once the line "STEP K" is on stdout; the run under
#                         mig holds there until checkpointed, as at --at2 (not in
#                         --mode concurrent, whose job must run on);
#                         read:N[K|M|G]: once the process has read N bytes
#                         (rchar of /proc/PID/io; for programs with no steps).
#   --timeout S           limit for each step (each run, the checkpoint, each
#                         restart); default 60.
#   --status N            the exit status the program must have; default 0
#                         (a shell's 128+SIG for death by signal SIG).
#   --data NAME=SIZE      generate @DATA@/NAME once with DATAGEN PATH SIZE MODE
#   --restart-arg ARG     pass ARG to every `migctl restart` (repeatable), e.g. --lazy
#   --reference-first     the reference run ends before the run under mig starts
#                         (by default they run at the same time): for programs
#                         that compute all the time or take much memory, which
#                         gain nothing from running beside themselves.
#   --keep                keep the temporary directory (printed) for debugging.
#
# In ARGS, @DIR@ becomes an empty directory of the run's own (reference and
# checkpointed runs get different ones, restarts reuse the checkpointed run's)
# and @DATA@ the directory of the generated data. PROGRAM's stdin is
# /dev/null and its stdout and stderr are pipes (read by cat into files), so
# `migctl restart` reconnects them to its own, which are pipes to the same
# files. Waiting is never done with sleeps: the harness polls the output file
# or /proc/PID/io, and every wait has a limit. On failure it prints the
# differences and the logs of every process (the program's stderr in each
# run, migctl's output, and $MIG_LOG if set), then kills what it started.
# Exit status: 0 passed, 1 failed, 77 skipped (the reason is printed).
set -u

if (( BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1) )); then
  echo "SKIP: run_feature.sh needs bash >= 5.1 (wait -n -p), this is $BASH_VERSION"
  exit 77
fi

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die_usage() { echo "run_feature.sh: $*" >&2; echo "(see run_feature.sh --help)" >&2; exit 2; }

migctl="" shim="" mode="" at="" at2="" limit=60 want_status=0 datagen="" keep=0 ref_first=0
datas=()
restart_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --migctl) migctl=${2-}; shift 2 || die_usage "--migctl needs a value" ;;
    --shim) shim=${2-}; shift 2 || die_usage "--shim needs a value" ;;
    --mode) mode=${2-}; shift 2 || die_usage "--mode needs a value" ;;
    --at) at=${2-}; shift 2 || die_usage "--at needs a value" ;;
    --at2) at2=${2-}; shift 2 || die_usage "--at2 needs a value" ;;
    --timeout) limit=${2-}; shift 2 || die_usage "--timeout needs a value" ;;
    --status) want_status=${2-}; shift 2 || die_usage "--status needs a value" ;;
    --datagen) datagen=${2-}; shift 2 || die_usage "--datagen needs a value" ;;
    --data) datas+=("${2-}"); shift 2 || die_usage "--data needs a value" ;;
    --keep) keep=1; shift ;;
    --reference-first) ref_first=1; shift ;;
    --restart-arg) restart_args+=("${2-}"); shift 2 || die_usage "--restart-arg needs a value" ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
[ $# -ge 1 ] || die_usage "no PROGRAM after --"
prog=$1; shift
prog_args=("$@")
case $mode in plain|restart|restart-twice|restart-chain|concurrent) ;; *) die_usage "--mode must be plain, restart, restart-twice, restart-chain or concurrent" ;; esac
[ "$mode" != restart-chain ] || [ -n "$at2" ] || die_usage "--mode restart-chain needs --at2"
[ -z "$at2" ] || [[ $at2 =~ ^[0-9]+$ || $at2 =~ ^read:[0-9]+[KMG]?$ ]] || die_usage "--at2 must be K or read:N[K|M|G]"
[[ $limit =~ ^[0-9]+$ && $limit -gt 0 ]] || die_usage "--timeout must be a number of seconds"
[[ $want_status =~ ^[0-9]+$ ]] || die_usage "--status must be a number"
if [ "$mode" != plain ]; then
  [ -n "$at" ] || die_usage "--mode $mode needs --at"
  [[ $at =~ ^[0-9]+$ || $at =~ ^read:[0-9]+[KMG]?$ ]] || die_usage "--at must be K or read:N[K|M|G]"
fi
[ ${#datas[@]} -eq 0 ] || [ -n "$datagen" ] || die_usage "--data needs --datagen"

abspath() { case $1 in /*) echo "$1" ;; */*) echo "$PWD/$1" ;; *) echo "$1" ;; esac; }
prog=$(abspath "$prog")
[ -n "$migctl" ] && migctl=$(abspath "$migctl")
[ -n "$shim" ] && shim=$(abspath "$shim")
[ -n "$datagen" ] && datagen=$(abspath "$datagen")

shim_missing=""
if [ -z "$shim" ]; then shim_missing="libmig.so is not built yet (no --shim given)"
elif [ ! -f "$shim" ]; then shim_missing="libmig.so not found at $shim"
fi
if [ "$mode" != plain ]; then
  [ -z "$shim_missing" ] || { echo "SKIP: $shim_missing"; exit 77; }
  [ -n "$migctl" ] && [ -x "$migctl" ] || { echo "SKIP: migctl not found at '${migctl}'"; exit 77; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mig-feature.XXXXXX") || { echo "FAIL: mktemp" >&2; exit 1; }
cd "$work" || exit 1
declare -A live=()   # PID -> what it is, for everything started and not yet reaped
logs=()              # "title|file" of every log to show on failure
failed=0

cleanup() {
  local p
  for p in "${!live[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for p in "${!live[@]}"; do { wait "$p"; } 2>/dev/null; done
  if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted (test timeout?)"; show_logs; exit 1' TERM INT HUP

show_logs() {
  local entry title file f
  for entry in "${logs[@]}"; do
    title=${entry%%|*} file=${entry#*|}
    echo "=== $title ($file)"
    if [ -s "$file" ]; then tail -n 200 "$file"; else echo "(empty)"; fi
  done
  if [ -n "${MIG_LOG:-}" ]; then
    if [ -d "$MIG_LOG" ]; then
      for f in "$MIG_LOG"/*; do [ -f "$f" ] && { echo "=== MIG_LOG $f"; tail -n 200 "$f"; }; done
    elif [ -f "$MIG_LOG" ]; then
      echo "=== MIG_LOG ($MIG_LOG)"; tail -n 200 "$MIG_LOG"
    else
      echo "=== MIG_LOG=$MIG_LOG: no such file"
    fi
  fi
}

fail() { echo "FAIL: $*"; failed=1; }
finish() {   # prints the logs if anything failed and exits
  # Also after a failure: a reference that says SKIP (77) makes the test a skip, as
  # the program under mig likely failed for the same reason.
  [ -z "${ref_status-x}" ] && wait_ref
  if [ "$failed" != 0 ]; then show_logs; exit 1; fi
  echo "PASS: $mode${at:+ at $at}"
  exit 0
}
ok() { echo "ok - $*"; }

# wait_pid PID WHAT: waits at most $limit s for our child PID (killing it
# then); sets STATUS. Returns 1 on timeout. `wait -n` (bash >= 5.1) races PID
# against a 1 s timer of our own; a PID that bash has already reaped and
# dropped from its job table (gone from /proc) is collected with plain `wait`.
STATUS=0
wait_pid() {
  local pid=$1 what=$2 timer first st end=$((SECONDS + limit))
  while [ "$SECONDS" -lt "$end" ]; do
    if [ ! -e "/proc/$pid" ]; then
      wait "$pid" 2>/dev/null
      STATUS=$?
      unset "live[$pid]"
      return 0
    fi
    sleep 1 &
    timer=$!
    live[$timer]="timer"
    first=""
    wait -n -p first "$pid" "$timer" 2>/dev/null
    st=$?
    # SIGKILL: a child forked but not yet exec'd would run our EXIT trap on SIGTERM
    [ "$first" = "$timer" ] || { kill -KILL "$timer" 2>/dev/null; wait "$timer" 2>/dev/null; }
    unset "live[$timer]"
    if [ "$first" = "$pid" ]; then
      STATUS=$st
      unset "live[$pid]"
      return 0
    fi
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  STATUS=$?
  unset "live[$pid]"
  fail "$what did not end within $limit s (killed)"
  return 1
}

alive() {   # alive PID: running (not a zombie)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

size_bytes() {   # 300M -> bytes
  local n=${1%[KMG]}
  case $1 in *K) echo $((n << 10)) ;; *M) echo $((n << 20)) ;; *G) echo $((n << 30)) ;; *) echo "$n" ;; esac
}

# Generated data, shared by every run of this invocation.
mkdir -p "$work/data"
for d in "${datas[@]}"; do
  name=${d%%=*} spec=${d#*=}
  size=${spec%%,*} kind=text
  [[ $spec == *,* ]] && kind=${spec#*,}
  [[ $name != "$d" && $name != */* && -n $name ]] || die_usage "bad --data '$d'"
  if ! timeout "$limit" "$datagen" "$work/data/$name" "$size" "$kind" >"$work/datagen.log" 2>&1; then
    logs+=("datagen|$work/datagen.log")
    fail "could not generate $name ($size $kind)"
    finish
  fi
done

# start_run NAME PRELOAD: starts PROGRAM in run directory $work/NAME; sets PID.
# A checkpoint moment that is a step (not of a concurrent checkpoint, which must find
# the job running on): the run under mig holds there until checkpointed (--at, --at2).
PID="" hold=""
if [ "$mode" != plain ] && [ "$mode" != concurrent ] && [[ $at =~ ^[0-9]+$ ]]; then
  hold="$at:$work/hold-at"
fi
if [ "$mode" = restart-chain ] && [[ $at2 =~ ^[0-9]+$ ]]; then
  [[ $at =~ ^[0-9]+$ ]] && [ "$at" -lt "$at2" ] || die_usage "--at must be a step before --at2"
  hold="$hold,$at2:$work/hold-at2"
fi
start_run() {
  local name=$1 preload=$2 run=$work/$1 a args=()
  mkdir -p "$run/dir"
  for a in "${prog_args[@]}"; do
    a=${a//@DIR@/$run/dir}
    args+=("${a//@DATA@/$work/data}")
  done
  start_cats "$run" "$name"
  if [ "$preload" = 1 ] && [ -n "$hold" ]; then
    MIG_FEATURE_HOLD=$hold LD_PRELOAD=$shim "$prog" "${args[@]}" </dev/null >"$run/out.fifo" 2>"$run/err.fifo" &
  elif [ "$preload" = 1 ]; then
    LD_PRELOAD=$shim "$prog" "${args[@]}" </dev/null >"$run/out.fifo" 2>"$run/err.fifo" &
  else
    "$prog" "${args[@]}" </dev/null >"$run/out.fifo" 2>"$run/err.fifo" &
  fi
  PID=$!
  live[$PID]="$name: $prog"
}

# start_cats RUN NAME: the pipes that become the process's stdout and stderr,
# appended to RUN/out and RUN/err.
CAT_OUT="" CAT_ERR=""
start_cats() {
  local run=$1 name=$2
  rm -f "$run/out.fifo" "$run/err.fifo"
  mkfifo "$run/out.fifo" "$run/err.fifo" || { fail "mkfifo in $run"; finish; }
  touch "$run/out" "$run/err"
  cat "$run/out.fifo" >>"$run/out" & CAT_OUT=$!
  cat "$run/err.fifo" >>"$run/err" & CAT_ERR=$!
  live[$CAT_OUT]="$name: stdout reader" live[$CAT_ERR]="$name: stderr reader"
  logs+=("$name: stderr|$run/err")
}

# finish_run NAME WHAT: waits for the process and its stdout/stderr readers;
# sets STATUS to the process's exit status. Returns 1 on timeout.
finish_run() {
  local name=$1 what=$2 status
  wait_pid "$PID" "$what" || return 1
  status=$STATUS
  wait_pid "$CAT_OUT" "the stdout reader of $what (is something else holding the pipe?)" || return 1
  wait_pid "$CAT_ERR" "the stderr reader of $what" || return 1
  STATUS=$status
}

# compare NAME STATUS: RUN/out and STATUS against the reference.
compare() {
  local name=$1 status=$2 out=$work/$1/out ref=$work/ref/out
  wait_ref
  if ! cmp -s "$ref" "$out"; then
    fail "$name: stdout differs from the reference run's"
    echo "--- reference ($(wc -c <"$ref") bytes) vs $name ($(wc -c <"$out") bytes):"
    if grep -qI . "$ref" && grep -qI . "$out"; then
      diff -u "$ref" "$out" | head -n 80
    else
      cmp "$ref" "$out" | head -n 5
    fi
  fi
  if [ "$status" != "$ref_status" ]; then
    fail "$name: exit status $status, the reference run's was $ref_status"
  fi
  [ "$failed" = 0 ] && ok "$name: stdout ($(wc -c <"$out") bytes) and exit status $status match"
}

# 1. The reference: PROGRAM without mig. It runs while the run under mig below does
# (they share nothing: each has its own run directory), since most programs spend
# their time in timed steps; what it printed is first read in compare (wait_ref).
start_run ref 0
REF_PID=$PID REF_CAT_OUT=$CAT_OUT REF_CAT_ERR=$CAT_ERR
ref_status=""
# wait_ref: the reference has ended (once); sets ref_status. Its exit status not the
# one wanted: FAIL (or SKIP for 77) and finish.
wait_ref() {
  [ -z "$ref_status" ] || return 0
  local pid=$PID cat_out=$CAT_OUT cat_err=$CAT_ERR status=$STATUS
  PID=$REF_PID CAT_OUT=$REF_CAT_OUT CAT_ERR=$REF_CAT_ERR
  ref_status=pending   # finish below does not come back here
  finish_run ref "the reference run" || finish
  ref_status=$STATUS
  PID=$pid CAT_OUT=$cat_out CAT_ERR=$cat_err STATUS=$status
  if [ "$ref_status" != "$want_status" ]; then
    if [ "$ref_status" = 77 ]; then
      reason=$(tail -n 1 "$work/ref/err")
      echo "SKIP: ${reason#SKIP: }"
      exit 77
    fi
    fail "the reference run (without mig) exited with $ref_status, want $want_status"
    echo "--- its stdout:"; tail -n 20 "$work/ref/out"
    finish
  fi
  ok "reference: exit status $ref_status, $(wc -l <"$work/ref/out") lines"
}
[ "$ref_first" = 0 ] || wait_ref

# 2. plain: the same under LD_PRELOAD, undisturbed.
if [ "$mode" = plain ]; then
  if [ -n "$shim_missing" ]; then
    echo "skipped the LD_PRELOAD run: $shim_missing"
  else
    start_run preload 1
    finish_run preload "the LD_PRELOAD run" && compare preload "$STATUS"
  fi
  finish
fi

# wait_moment PID OUT WHEN: waits until process PID (real) has printed "STEP K"
# to OUT or read N bytes; fails and finishes if it ends first or takes too long.
wait_moment() {
  local pid=$1 out=$2 when=$3 deadline=$((SECONDS + limit)) what want_read rchar key value
  if [[ $when == read:* ]]; then
    want_read=$(size_bytes "${when#read:}") what="having read ${when#read:} bytes"
  else
    what="printing STEP $when"
  fi
  while :; do
    if [[ $when == read:* ]]; then
      rchar=0
      if [ -r "/proc/$pid/io" ]; then
        while read -r key value; do [ "$key" = rchar: ] && rchar=$value; done <"/proc/$pid/io" 2>/dev/null
      elif alive "$pid"; then
        fail "cannot read /proc/$pid/io to see how much the program has read"
        finish
      fi
      [ "$rchar" -ge "$want_read" ] && break
    elif grep -qxF "STEP $when" "$out"; then
      break
    fi
    if ! alive "$pid"; then
      fail "the program ended before $what: nothing to checkpoint"
      finish_run "${out%/out}" "the run to checkpoint"
      finish
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail "the program did not get to $what within $limit s"
      finish
    fi
    sleep 0.01
  done
  ok "PID $pid reached $what"
}

# checkpoint_stop PID IMG NAME: migctl checkpoint PID -o IMG --stop, then waits for
# the process (our child $PID) and its readers.
checkpoint_stop() {
  local pid=$1 img=$2 name=$3 st
  logs+=("migctl checkpoint ($name)|$work/migctl-checkpoint-$name.log")
  timeout -k 5 "$limit" "$migctl" checkpoint "$pid" -o "$img" --stop >"$work/migctl-checkpoint-$name.log" 2>&1
  st=$?
  if [ "$st" = 124 ]; then
    fail "migctl checkpoint did not return within $limit s"
    finish
  elif [ "$st" != 0 ]; then
    fail "migctl checkpoint $pid -o $img --stop exited with $st"
    finish
  fi
  [ -s "$img" ] || { fail "migctl checkpoint succeeded but $img is missing or empty"; finish; }
  finish_run "$name" "the checkpointed process (after checkpoint --stop)" || finish
  # 86: migctl checkpoint --help (the parent can tell "checkpointed" from "finished").
  [ "$STATUS" = 86 ] || { fail "the process ended with status $STATUS after checkpoint --stop, not 86"; finish; }
  ok "$name: image of $(du -k "$img" | cut -f1) KiB; the process ended with status $STATUS" \
    "after printing $(wc -c <"$work/$name/out") bytes"
}

# 3'. concurrent: checkpointed at WHEN while it runs on, which it must not notice;
# the image restarted must go on from the moment of the freeze.
if [ "$mode" = concurrent ]; then
  start_run ckpt 1
  ckpt_pid=$PID
  wait_moment "$ckpt_pid" "$work/ckpt/out" "$at"
  img=$work/image.mig
  logs+=("migctl checkpoint (concurrent)|$work/migctl-checkpoint.log")
  timeout -k 5 "$limit" "$migctl" checkpoint "$ckpt_pid" -o "$img" >"$work/migctl-checkpoint.log" 2>&1
  st=$?
  [ "$st" = 0 ] || { fail "migctl checkpoint $ckpt_pid -o $img exited with $st"; finish; }
  if [ "$(id -u)" != 0 ] && grep -q "cannot make a userfaultfd that hands kernel-mode faults over" \
       "$work/migctl-checkpoint.log"; then
    echo "SKIP: a concurrent checkpoint needs CAP_SYS_PTRACE in the job (root), vm.unprivileged_userfaultfd = 1 or /dev/userfaultfd"
    exit 77
  fi
  grep -q "(concurrent: " "$work/migctl-checkpoint.log" ||
    { fail "the checkpoint was not concurrent: $(cat "$work/migctl-checkpoint.log")"; finish; }
  ok "$(cat "$work/migctl-checkpoint.log")"
  finish_run ckpt "the process checkpointed concurrently (running on)" || finish
  compare ckpt "$STATUS"
  [ "$failed" = 0 ] || finish
  mkdir -p "$work/restart1"
  start_cats "$work/restart1" restart1
  "$migctl" restart "$img" </dev/null >"$work/restart1/out.fifo" 2>"$work/restart1/err.fifo" &
  PID=$!
  live[$PID]="restart1: migctl restart"
  finish_run restart1 "migctl restart of the concurrent image" || finish
  [ "$STATUS" = "$ref_status" ] || fail "the restarted process ended with $STATUS, the reference with $ref_status"
  ref_len=$(wc -c <"$work/ref/out") got_len=$(wc -c <"$work/restart1/out")
  if [ "$got_len" -eq 0 ] || [ "$got_len" -gt "$ref_len" ] ||
     ! cmp -s <(tail -c "$got_len" "$work/ref/out") "$work/restart1/out"; then
    fail "the restarted process's output ($got_len bytes) is not the end of the reference's ($ref_len bytes)"
    diff -u "$work/ref/out" "$work/restart1/out" | head -n 40
  elif ! head -c $((ref_len - got_len)) "$work/ref/out" | grep -qxF "STEP $at" && [[ $at != read:* ]]; then
    fail "the restarted process went on from before STEP $at"
  else
    ok "restart of the concurrent image: the last $got_len of $ref_len bytes of the reference, status $STATUS"
  fi
  finish
fi

# 3. restart: run under LD_PRELOAD until WHEN, checkpoint with --stop.
start_run ckpt 1
ckpt_pid=$PID
wait_moment "$ckpt_pid" "$work/ckpt/out" "$at"
img=$work/image.mig
checkpoint_stop "$ckpt_pid" "$img" ckpt
[ -z "$hold" ] || : >"$work/hold-at"   # the restarts go on after STEP $at
cp "$work/ckpt/out" "$work/prefix"

# 4. restart (twice for restart-twice), each continuing the prefix; for
# restart-chain, the restarted process is checkpointed again at AT2 and that image
# restarted. One process comes back in migctl restart's own process, under a new real
# PID (its old one may be another process's by now: pid_max is 32768 here): named by
# that. A tree's members get their old PIDs back (or the restart fails), migctl restart
# staying their parent: named by the old PID.
start_restart() {  # start_restart NAME IMG PREFIX
  local name=$1 run=$work/$1
  mkdir -p "$run"
  cp "$3" "$run/out"
  start_cats "$run" "$name"
  "$migctl" restart "${restart_args[@]}" "$2" </dev/null >"$run/out.fifo" 2>"$run/err.fifo" &
  PID=$!
  live[$PID]="$name: migctl restart"
}
restart_once() {
  start_restart "$1" "$img" "$work/prefix"
  finish_run "$1" "migctl restart ($1)" || return
  compare "$1" "$STATUS"
}
if [ "$mode" = restart-chain ]; then
  start_restart restart1 "$img" "$work/prefix"
  wait_moment "$PID" "$work/restart1/out" "$at2"
  again=$PID
  [ "$(cat "/proc/$PID/comm" 2>/dev/null)" = migctl ] && again=$ckpt_pid
  checkpoint_stop "$again" "$work/image2.mig" restart1
  [ -z "$hold" ] || : >"$work/hold-at2"   # restart2 goes on after STEP $at2
  start_restart restart2 "$work/image2.mig" "$work/restart1/out"
  finish_run restart2 "migctl restart (restart2)" && compare restart2 "$STATUS"
  finish
fi
restart_once restart1
if [ "$mode" = restart-twice ] && [ "$failed" = 0 ]; then
  restart_once restart2
fi
finish
