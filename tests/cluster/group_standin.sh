#!/bin/bash
# group_standin.sh: a process group split across hosts (issue 12). jobs/standin_job.py
# leads a group of its own with a member forked at home; both move a -> b, and there
# the job forks a child (born on b, no process at home). Sent at a, where the job was
# started: kill -STOP -PGID stops the job and the child born on b (seen stopped there:
# the deputy's stop and its group stand-in's say it was the group's) and kill -CONT
# -PGID continues both; kill -USR1 -PGID reaches the job, the member and the child born
# on b (each prints its line: the child's comes through the deputy's group stand-in);
# kill -TERM -PGID ends the member (13) and the child (14), and the job's
# waitpid(-PGID) reaps both, one at home and one on b, then says there is no third;
# kill -KILL -PGID ends the job (its shell on a sees 137) and a second child born on b;
# no stand-in (mig-standin) is left on a. A socketpair two members hold both ends of
# stays one socket through a -> b -> a (a message before the move, its answer after).
#
# usage: group_standin.sh OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-group-standin' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
[[ -x /usr/bin/python3 ]] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
cluster_up a b

JOB=$(readlink -f "$(dirname "$0")/jobs/standin_job.py")
out() { jfile g out; }
has_line() { grep -qx "$1" "$(out)"; }
# after NAME WHAT: a FAIL with the job's output, its stderr and the logs.
after() {
  fail "$1"
  detail "$(out)" "its stdout"
  detail "$(jfile g err)" "its stderr"
  shadowd_logs a b
}

start_job g mig /usr/bin/python3 "$JOB" @DIR@ || cluster_end
wait_step g 1 30 || { after "no STEP 1 from the job on a"; cluster_end; }
PG=$(awk '$1 == "pgid" { print $2 }' "$(jfile g err)")
migrate g b
if (( MIG_RC != 0 )) || [[ $(host_of "$(where g)") != b ]]; then
  fail "migrate a -> b (the job and its member): exit $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
  shadowd_logs a b
  cluster_end
fi
ok "the job (PGID $PG) and its member moved a -> b: $(migrated_line)"
touch "$(jfile g data)/go"
wait_step g 2 30 || { after "no STEP 2 (a child forked on b) after the move"; cluster_end; }

# STOP and CONT of the group: the processes on b, the job and the child born there.
child=$(awk '$1 == "child" { print $2 }' "$(jfile g err)")
creal=$((child - 4194304))   # its real PID on b (shim/forward/child_pids.h)
jreal=$(hx b awk '{ print $4 }' "/proc/$creal/stat" 2>/dev/null)   # its parent there: the job
states_on_b() { echo "$(hx b awk '{ print $3 }' "/proc/$jreal/stat" 2>/dev/null)$(hx b awk '{ print $3 }' "/proc/$creal/stat" 2>/dev/null)"; }
hx a kill -STOP -- "-$PG"
if wait_until 20 eval '[[ $(states_on_b) == TT ]]'; then
  ok "kill -STOP -$PG on a stopped the job (PID $jreal on b) and its child born on b (PID $creal there)"
else
  after "kill -STOP -$PG on a: the job and the child born on b are in states '$(states_on_b)' on b (want TT)"
fi
hx a kill -CONT -- "-$PG"
if wait_until 20 eval '[[ $(states_on_b) =~ ^[RSD][RSD]$ ]]'; then
  ok "kill -CONT -$PG on a continued them: states '$(states_on_b)' on b"
else
  after "kill -CONT -$PG on a: the job and the child born on b are in states '$(states_on_b)' on b"
fi

hx a kill -USR1 -- "-$PG"
if wait_until 20 eval 'has_line "usr1 job" && has_line "usr1 member" && has_line "usr1 child born away"'; then
  ok "kill -USR1 -$PG on a reached the job and the member on b and the child born on b"
else
  after "kill -USR1 -$PG on a: got $(grep -c '^usr1' "$(out)") of 3 lines (job, member, child born on b)"
fi

hx a kill -TERM -- "-$PG"
if wait_step g 3 20 && has_line "reaped member status 13" && has_line "reaped child born away status 14" &&
   has_line "no more children in the group" && ! grep -q "a third\|unknown" "$(out)"; then
  ok "kill -TERM -$PG on a ended the member and the child born on b; the job's waitpid(-$PG) on b reaped both"
else
  after "kill -TERM -$PG on a: the job's waitpid(-$PG) did not reap the member (at home) and the child born on b, then ECHILD"
fi

if wait_step g 4 20; then
  second=$(awk '$1 == "second" { print $2 }' "$(jfile g err)")
  real=$((second - 4194304))   # its real PID on b (shim/forward/child_pids.h)
  hx a kill -KILL -- "-$PG"
  if wait_job g 20 && [[ $STATUS == 137 ]] && wait_until 20 eval '! hx b kill -0 "$real" 2>/dev/null'; then
    ok "kill -KILL -$PG on a ended the job (its shell saw 137) and its second child born on b"
  else
    after "kill -KILL -$PG on a: status $STATUS (want 137); the child born on b (PID $real there) $(hx b kill -0 "$real" 2>/dev/null && echo "still runs" || echo "is gone")"
    hx b kill -KILL "$real" 2>/dev/null
  fi
else
  after "no STEP 4 (a second child forked on b)"
fi

if wait_until 10 eval '! hx a pgrep -x mig-standin >/dev/null'; then
  ok "no group stand-in left on a once the job ended"
else
  fail "group stand-ins left on a after the job ended: $(hx a pgrep -a -x mig-standin | tr '\n' ' ')"
fi
kill_job g

# --- a socketpair both members hold both ends of ---------------------------------------------
# It stays one socket at home (Unix sockets are home streams on a move): a message sent
# before the move is read on b by the other member, whose answer the first reads after a
# hop home.
SOCKETPAIR='import os, socket, sys, time
d = sys.argv[1]
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    while not os.path.exists(d + "/go"):
        time.sleep(0.05)
    b.send(b"child got " + b.recv(100))
    os._exit(0)
a.send(b"before the move")
print("STEP 1", flush=True)
while not os.path.exists(d + "/go"):
    time.sleep(0.05)
print("parent reads:", a.recv(100).decode(), flush=True)
os.waitpid(pid, 0)'
start_job sp mig /usr/bin/python3 -c "$SOCKETPAIR" @DIR@ || cluster_end
wait_step sp 1 30 && migrate sp b && migrate sp a
if (( MIG_RC == 0 )); then
  touch "$(jfile sp data)/go"
  if wait_job sp 30 && [[ $STATUS == 0 ]] && grep -qx "parent reads: child got before the move" "$(jfile sp out)"; then
    ok "a socketpair two members hold both ends of stayed one socket: a -> b -> a, its message and the answer as sent"
  else
    fail "socketpair: status $STATUS, output: $(tr '\n' ' ' <"$(jfile sp out)")"
    detail "$(jfile sp err)" "its stderr"
  fi
else
  fail "socketpair: migrate: exit $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
fi
kill_job sp
cluster_end
