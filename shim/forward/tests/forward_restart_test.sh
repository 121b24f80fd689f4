#!/usr/bin/env bash
# Forwarding in a restored process, the way a migration starts it: a job under
# libmig.so is checkpointed (migctl checkpoint --stop), then restarted with
# `migctl restart --migrated` (and then checkpointed and migrated once more), which makes its fds stand-ins and hands the shim a
# Config through the restore plan (Header::configFd). Every restored thread goes
# through mig_resumed_thread, turns syscall user dispatch on, and waits for the
# control thread to activate forwarding. fake_relay --bare plays home: it holds the
# job's stdout, so whatever the restored job prints must land in TMP/home/stdout.txt.
#
#   forward_restart_test.sh FORWARD_RESTART_APP MIGCTL LIBMIG FAKE_RELAY
set -euo pipefail

APP=$(realpath "$1") MIGCTL=$(realpath "$2") LIBMIG=$(realpath "$3") RELAY=$(realpath "$4")
T=$(mktemp -d /tmp/mig-forward-restart.XXXXXX)
JOB= RELAY_PID=
status=1
TOKEN=$(for i in $(seq 160 191); do printf '%02x' "$i"; done)  # fake_relay's token

cleanup() {
  for p in $JOB $RELAY_PID; do kill -9 "$p" 2>/dev/null || true; done
  if [ "$status" != 0 ]; then
    for f in before.txt ckpt.out ckpt-mid.out restart1.out restart1.err ckpt2.out restart2.out restart2.err home/stdout.txt; do
      [ -f "$T/$f" ] && { echo "--- $f"; cat "$T/$f"; }
    done
  fi
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
has_line() { grep -qxF -- "$1" "$2" || fail "expected line '$1' in $(basename "$2")"; }

mkdir "$T/home" "$T/away"
cd "$T/away"

# The job, until it has counted to 5; then its image, and it ends.
exec 8< <(LD_PRELOAD="$LIBMIG" exec "$APP" 2>&1 </dev/null 7<&- 8<&-)
JOB=$!
while read -r -t 30 -u 8 line; do
  echo "$line" >> "$T/before.txt"
  [ "$line" = "step 5" ] && break
done
"$MIGCTL" checkpoint "$JOB" -o "$T/job.img" --stop > "$T/ckpt.out" 2>&1 || fail "checkpoint failed"
cat <&8 >> "$T/before.txt"
exec 8<&-
JOB=

# Home: the relay holds the job's stdin, stdout and stderr; its stdout and its own
# messages come to us through one pipe.
exec 9< <(exec "$RELAY" --bare "$T/home" "$T/relay.sock" 2>&1 < /dev/null 8<&-)
RELAY_PID=$!
read -r -t 30 -u 9 ready || fail "fake_relay did not start"
[ "$ready" = READY ] || fail "fake_relay said '$ready'"
# read_home UNTIL: what the job prints at home, up to and including line UNTIL.
read_home() {
  while read -r -t 60 -u 9 line; do
    case $line in connections*) stats=$line; return 0 ;; esac
    echo "$line" >> "$T/home/stdout.txt"
    [ "$line" = "$1" ] && return 0
  done
  fail "no '$1' from home"
}
MIGRATED=(--migrated --relay "$T/relay.sock" --job-id 4242)
export MIG_JOB_TOKEN=$TOKEN  # the token travels in the environment, never on a command line

# First migration; while the restored job runs, a checkpoint it resumes from (as a
# hop aborted with "try again"), then a second migration (from a process whose
# threads are dispatched, some of them inside the SIGSYS handler).
"$MIGCTL" restart "${MIGRATED[@]}" "$T/job.img" > "$T/restart1.out" 2> "$T/restart1.err" < /dev/null 9<&- &
JOB=$!  # migctl restart becomes the restored job
read_home "step 7"
"$MIGCTL" checkpoint "$JOB" -o "$T/mid.img" > "$T/ckpt-mid.out" 2>&1 || fail "the checkpoint the job resumes from failed"
read_home "step 10"
"$MIGCTL" checkpoint "$JOB" -o "$T/job2.img" --stop > "$T/ckpt2.out" 2>&1 || fail "second checkpoint failed"
wait "$JOB" || true
JOB=
timeout 120 "$MIGCTL" restart "${MIGRATED[@]}" "$T/job2.img" > "$T/restart2.out" 2> "$T/restart2.err" < /dev/null 9<&- ||
  fail "the twice migrated job exited with status $?"

kill -TERM "$RELAY_PID"
stats=
read_home "(never)" || true
RELAY_PID=
[ -n "$stats" ] || fail "fake_relay did not finish"

home="$T/home/stdout.txt"
has_line "done" "$home"
has_line "step $((30))" "$home"
has_line "worker 29" "$home"            # the worker that had SIGSYS blocked
has_line "in handler" "$home"           # a handler blocking all signals made a call
has_line "usr1 1" "$home"               # and returned, though through libc's restorer
has_line "late thread" "$home"          # a thread created after the restore
has_line "cwd $T/home" "$home"          # the working directory is home's
grep -qE '^made_after fd [0-9]+ write 18$' "$home" || fail "made_after not written"
[ "$(cat "$T/home/made_after.txt")" = "after the restart" ] || fail "made_after.txt not at home"
[ ! -e "$T/away/made_after.txt" ] || fail "made_after.txt was created locally"
[ ! -s "$T/restart1.out" ] && [ ! -s "$T/restart2.out" ] || fail "a restored job wrote to its local stdout"
! grep "lost a pipe end" "$T/before.txt" "$home" || fail "a forked child lost an end of its parent's pipe"
# Every step exactly once: before the checkpoint locally, after it at home.
cat "$T/before.txt" "$home" | grep '^step ' > "$T/steps.txt"
seq 1 30 | sed 's/^/step /' | cmp - "$T/steps.txt" || fail "steps lost or repeated across the restart"

read -r _ conns _ requests _ bad <<< "$stats"
[ "$bad" = 0 ] || fail "relay saw $bad bad hellos"
# control, main and worker after the first restart; control, main, worker and the
# late thread after the second
[ "$conns" -ge 7 ] || fail "expected a connection per thread and restart (7), relay saw $conns"

status=0
echo "PASS ($stats)"
