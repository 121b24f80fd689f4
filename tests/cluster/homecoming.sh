#!/bin/bash
# homecoming.sh: a hop back home makes the job local again (deputy/homecoming.h).
# Between two shadowd on loopback, a job that appends numbered lines to a file at home
# and talks to an echo server at home over one TCP connection (a blocking read at home
# is often in flight when a hop freezes it) moves A -> B -> A -> B -> A. After each
# return: the PID at home runs the job itself (its command line, not mig-deputy's), no
# call of it is forwarded any more (MIG_LOG), `migctl list` shows it at home as a
# plain local job; and it moves out again. On its second stay on B its working
# directory at home is removed (the return must not need its name). It forks a child
# there: its return home is refused even with --only (one line, nothing frozen), it
# runs on, and comes home once the child has ended. Then the test tells it to end (its
# ENDFILE) and waits for its end: every line and every echo exactly once, in order,
# the PID unchanged, and the parent gets the job's status.
#
# usage: homecoming.sh SHADOWD MIGCTL LIBMIG HOMECOMING_JOB
set -u
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3") job=$(realpath "$4")
source "$(dirname "$0")/lib/loopback_lib.sh" homecoming
new_key "$dir/key"
pa=$(port) pb=$(port)
start_shadowd a $pa "$dir/key"
start_shadowd b $pb "$dir/key"
wait_shadowds a b
A_ADDR=127.0.0.1:$pa B_ADDR=127.0.0.1:$pb

# The echo server at home: one connection, every line back.
/usr/bin/python3 - "$dir/echo.port" <<'PY' &
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
c, _ = s.accept()
while True:
    b = c.recv(65536)
    if not b:
        break
    c.sendall(b)
PY
pids+=($!)
wait_until 10 test -s "$dir/echo.port" || bad "the echo server started"
cd "$dir"
# The job works in a directory of its own, removed while it is away the second time:
# back home it is still the job's working directory (it held it, as a process does).
mkdir "$dir/cwd"
( cd "$dir/cwd" && MIG_LOG=$dir/mig.log LD_PRELOAD=$libmig "$job" 600 "$dir/home.txt" "$(cat "$dir/echo.port")" "$dir/forkfile" "$dir/endfile" > "$dir/out.txt" 2> "$dir/err.txt"
  echo "$?" > "$dir/status" ) &
pids+=($!)
wait_line "$dir/out.txt" '^step 3 ' || bad "the job started" "$dir/out.txt" "$dir/err.txt"
jobpid=$(awk '/^step 1 /{print $4; exit}' "$dir/out.txt")
pids+=($jobpid)
cmdline=$(tr '\0' ' ' < "/proc/$jobpid/cmdline")

steps() { grep -c '^step ' "$dir/out.txt"; }
for round in 1 2; do
  n=$(steps)
  A migrate "$jobpid" --to "$B_ADDR" > "$dir/out-b$round" 2>&1 ||
    bad "round $round: A -> B (exit $?)" "$dir/out-b$round" "$dir/a.log" "$dir/b.log"
  wait_line "$dir/out.txt" "^step $((n + 5)) " || bad "round $round: the job goes on on B" "$dir/out.txt" "$dir/b.log"
  if [ "$(tr '\0' ' ' < "/proc/$jobpid/cmdline")" != "$cmdline" ]; then
    ok "round $round: on B, PID $jobpid at home is its deputy ($(tr '\0' ' ' < "/proc/$jobpid/cmdline" | cut -c1-60))"
  else bad "round $round: a deputy at home while the job is on B" "$dir/a.log"; fi
  if [ $round = 2 ]; then
    rmdir "$dir/cwd" || bad "the job's working directory removed while it is on B"
    touch "$dir/forkfile"
    wait_line "$dir/out.txt" '^child forked$' || bad "the job forks on B" "$dir/out.txt"
    A migrate "$jobpid" --to "$A_ADDR" --only > "$dir/out-refused" 2>&1; rc=$?
    n=$(steps)
    if [ $rc -ne 0 ] && [ "$(wc -l < "$dir/out-refused")" -le 2 ] && grep -q "born away from home" "$dir/out-refused" &&
       grep -q "runs on where it was" "$dir/out-refused" && wait_line "$dir/out.txt" "^step $((n + 5)) "; then
      ok "a return home with a child born on B is refused, the job runs on: $(grep -o 'cannot move.*born away from home' "$dir/out-refused")"
    else bad "refusal for a child born away (exit $rc)" "$dir/out-refused" "$dir/b.log"; fi
    rm -f "$dir/forkfile"
    wait_line "$dir/out.txt" '^child reaped$' || bad "the child ends on B" "$dir/out.txt"
  fi
  n=$(steps)
  A migrate "$jobpid" --to "$A_ADDR" > "$dir/out-a$round" 2>&1; rc=$?
  if [ $rc -eq 0 ] && grep -q "^migrated $jobpid to 127.0.0.1:$pa: frozen" "$dir/out-a$round"; then
    ok "round $round: B -> A: $(grep "^migrated" "$dir/out-a$round")"
  else bad "round $round: B -> A (exit $rc)" "$dir/out-a$round" "$dir/a.log" "$dir/b.log" "$dir/a/spool/"*.log; fi
  mark=$(wc -l < "$dir/mig.log")
  exe=$(readlink "/proc/$jobpid/exe")
  if [ "$(tr '\0' ' ' < "/proc/$jobpid/cmdline")" = "$cmdline" ] && [[ $exe != *mig-deputy* ]]; then
    ok "round $round: back home, PID $jobpid is the job itself ($cmdline), no deputy"
  else bad "round $round: the job at home (cmdline '$(tr '\0' ' ' < "/proc/$jobpid/cmdline")', exe $exe)" "$dir/a.log"; fi
  A list > "$dir/list$round" 2>&1
  # WHERE and STATE only (columns 3 and 4): the command, a path, may say anything.
  if [[ $(awk -v p="$jobpid" '$1 == p { print $3, $4 }' "$dir/list$round") =~ ^127\.0\.0\.1:$pa\ ([a-z]+)$ ]] &&
     [[ ${BASH_REMATCH[1]} != away && ${BASH_REMATCH[1]} != migrat* ]]; then
    ok "round $round: migctl list shows it at home, a plain local job"
  else bad "round $round: migctl list" "$dir/list$round"; fi
  wait_line "$dir/out.txt" "^step $((n + 10)) " || bad "round $round: the job goes on at home" "$dir/out.txt" "$dir/a.log"
  if [ "$(tail -n +"$((mark + 1))" "$dir/mig.log" | grep -c 'forwarded home\|mig deputy')" = 0 ]; then
    ok "round $round: nothing forwarded after the return ($(grep -c 'back home' "$dir/mig.log") carried/local answers so far)"
  else bad "round $round: calls forwarded after the return" "$dir/mig.log"; fi
done

# Every check is done: the job need not run its 600 steps (30 s); it ends after the
# step under way once ENDFILE exists, as a whole run does.
seen=$(steps)
touch "$dir/endfile"
wait_until 60 test -s "$dir/status"
status=$(cat "$dir/status" 2>/dev/null)
last=$(steps)
if [ "$status" = 7 ] && [ "$last" -ge "$seen" ] && grep -qx done "$dir/out.txt" &&
   diff <(for i in $(seq 1 "$last"); do echo "step $i pid $jobpid"; done) <(grep '^step ' "$dir/out.txt") > "$dir/out.diff" &&
   [ "$(grep -c '^child ' "$dir/out.txt")" = 2 ] &&
   diff <(for i in $(seq 1 "$last"); do echo "line $i"; done) "$dir/home.txt" > "$dir/home.diff"; then
  ok "$last steps, every line in the home file and every echo once, in order, PID $jobpid throughout; the parent got status 7"
else bad "exact output (status '$status', $last steps)" "$dir/out.diff" "$dir/home.diff" "$dir/err.txt" "$dir/a.log" "$dir/b.log"; fi
[ "$failures" -eq 0 ]
