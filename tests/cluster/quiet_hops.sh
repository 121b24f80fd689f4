#!/bin/bash
# quiet_hops.sh: mig's own lines never reach a job's fds (issue 15). Between two
# shadowd on loopback, B's started with MIG_RESTORE_DEBUG=1 and the job with it in its
# environment (a hop home's restore is the deputy's, with the job's environment), so
# that every restore of a hop says something: a job whose stderr is a file moves
# A -> B -> A. While it runs on B: the restorer's lines are in B's hop log in the
# spool, and `migctl checkpoint` of it there warns about none of mig's fds (its relay
# connections, the readiness stand-ins of its home fds). Back home: the restore's
# lines are in A's hop log. Then a `migctl restart` of a checkpoint of the job, its
# stderr a file other than migctl's: the lines go to migctl's stderr. At the end the
# job's stderr holds exactly what an undisturbed run prints there: nothing.
#
# usage: quiet_hops.sh SHADOWD MIGCTL LIBMIG MIGRATING_JOB
set -u
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3") job=$(realpath "$4")
source "$(dirname "$0")/lib/loopback_lib.sh" quiet
new_key "$dir/key"
pa=$(port) pb=$(port)
start_shadowd a $pa "$dir/key"
MIG_RESTORE_DEBUG=1 start_shadowd b $pb "$dir/key"
wait_shadowds a b
A_ADDR=127.0.0.1:$pa B_ADDR=127.0.0.1:$pb
cd "$dir"

( MIG_RESTORE_DEBUG=1 LD_PRELOAD=$libmig "$job" 3000 "$dir/raw.txt" > "$dir/out.txt" 2> "$dir/err.txt"
  echo "$?" > "$dir/status" ) &
pids+=($!)
wait_line "$dir/out.txt" '^step 3 ' || bad "the job started" "$dir/out.txt" "$dir/err.txt"
jobpid=$(awk '/^step 1 /{print $4; exit}' "$dir/out.txt")
pids+=($jobpid)
steps() { grep -c '^step ' "$dir/out.txt"; }

n=$(steps)
A migrate "$jobpid" --to "$B_ADDR" > "$dir/out-b" 2>&1 || bad "A -> B (exit $?)" "$dir/out-b" "$dir/a.log" "$dir/b.log"
wait_line "$dir/out.txt" "^step $((n + 3)) " || bad "the job goes on on B" "$dir/out.txt" "$dir/b.log"
onb=$(sed -n 's/.*runs here as PID \([0-9]*\)$/\1/p' "$dir/b.log" | tail -1)
pids+=($onb)
if grep -q '^mig-restore: ' "$dir"/b/spool/job-*.log 2>/dev/null; then
  ok "on B: the restorer's lines are in B's hop log ($(grep -c '^mig-restore: ' "$dir"/b/spool/job-*.log) lines)"
else bad "on B: the restorer's lines in the hop log" "$dir"/b/spool/*.log "$dir/err.txt"; fi

# A checkpoint of the moved job where it runs: mig's connections and stand-ins are not
# the job's, and nothing is said of them; its home fds (stdin, stdout, stderr, its
# file) are its own, held at home, which one line says.
"$migctl" checkpoint "$onb" -o "$dir/moved.img" > "$dir/ckpt.out" 2> "$dir/ckpt.err"; rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c 'warning' "$dir/ckpt.err")" = 1 ] && ! grep -q 'socket' "$dir/ckpt.err" &&
   grep -q "warning: fds 0, 1, 2, 3\(, [0-9]*\)* are held at the job's home host" "$dir/ckpt.err"; then
  ok "migctl checkpoint of the job on B: $(cut -c1-110 "$dir/ckpt.err")..."
else bad "migctl checkpoint of the job on B (exit $rc)" "$dir/ckpt.err" "$dir/ckpt.out"; fi

n=$(steps)
A migrate "$jobpid" --to "$A_ADDR" > "$dir/out-a" 2>&1 || bad "B -> A (exit $?)" "$dir/out-a" "$dir/a.log" "$dir/b.log"
wait_line "$dir/out.txt" "^step $((n + 3)) " || bad "the job goes on at home" "$dir/out.txt" "$dir/a.log"
if grep -q '^mig-restore: ' "$dir"/a/spool/job-*.log 2>/dev/null; then
  ok "back home: the restore's lines are in A's hop log ($(grep -c '^mig-restore: ' "$dir"/a/spool/job-*.log) lines)"
else bad "back home: the restore's lines in the hop log" "$dir"/a/spool/*.log "$dir/err.txt"; fi
if [ ! -s "$dir/err.txt" ]; then ok "after A -> B -> A the job's stderr is empty, as an undisturbed run's"
else bad "the job's stderr after A -> B -> A holds mig's lines" "$dir/err.txt"; fi

# A user's restart: its stderr is the user's, the job's stderr is the job's file.
"$migctl" checkpoint "$jobpid" -o "$dir/job.img" --stop > "$dir/ckpt2.out" 2>&1 ||
  bad "checkpoint --stop at home" "$dir/ckpt2.out"
wait_until 10 test -s "$dir/status"
MIG_RESTORE_DEBUG=1 "$migctl" restart "$dir/job.img" 2> "$dir/restart.err" > /dev/null &
restarted=$!
pids+=($restarted)
n=$(steps)
wait_line "$dir/out.txt" "^step $((n + 3)) " || bad "the restarted job goes on" "$dir/out.txt" "$dir/restart.err"
if grep -q '^mig-restore: ' "$dir/restart.err" && [ ! -s "$dir/err.txt" ]; then
  ok "migctl restart: the restorer's lines on migctl's stderr, none in the job's"
else bad "migctl restart's lines" "$dir/restart.err" "$dir/err.txt"; fi
kill -TERM "$restarted"
wait_line "$dir/out.txt" '^got SIGTERM' || bad "the job ends on SIGTERM" "$dir/out.txt"
if [ ! -s "$dir/err.txt" ]; then ok "the job's stderr stayed empty to its end"
else bad "the job's stderr at its end" "$dir/err.txt"; fi
[ "$failures" -eq 0 ]
