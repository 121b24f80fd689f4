#!/bin/bash
# tree_move.sh: `migctl migrate` of a process with children (issue 12), as a user sees it.
# 1. A python3 family moves a -> b whole, pre-copy (the default): the root with a child
#    it shares a pipe with (bytes in flight across the move) and a child that ended and
#    was not waited for (a zombie); the root and the child keep writing 8 MiB of memory
#    each, 32 pages every 0.1 s, all along (also during the rounds), and at the end
#    check every page against a replay of their writes (exact). After the move the root and its live child are deputies at home (each
#    its own job in `migctl list`, at b), the child still the root's child there, the
#    zombie still a zombie; a signal sent at home to the child reaches it on b, the
#    root's kill of its child reaches it, the child reads both lines from the pipe, its
#    getpid/getppid/getpgid/getpgrp/getsid are home's, the root's waits get the zombie's status 5 and the
#    child's 3 under their PIDs, and the shell on a gets the root's status 7.
#    The tree then moves on whole, b -> c with --stop-and-copy (a signal from home
#    reaches the child there); once the root has a child born away from home (on c),
#    the tree's move home with --precopy is refused in one line (such a child comes
#    home stop-and-copy only) and it runs on; the root kills that
#    child and waits for it (status -9). Then the tree comes home, c -> a pre-copy, and
#    is a plain local tree again (deputy/homecoming.h): `migctl list` at a shows the
#    root and the child once each, local; neither is a deputy; the child is still the
#    root's child and the zombie still the root's zombie; a signal sent at home reaches
#    the child from the kernel; the pipe between them is home's again. A parent waiting
#    for its child, which waits in a read of a FIFO at home, moves a -> b -> a whole
#    (calls in flight at the hop home) and is local again; its output and status are
#    the undisturbed run's.
# 2. What stays refused before anything is frozen, one line, the job running on at
#    home: a tree with a member not under libmig.so (named) and --postcopy of a tree.
#    A python3 multiprocessing.Pool(2) sharing a Lock and a Value with its workers
#    (memory the processes share: one object again on each host; such a tree moves
#    stop-and-copy) moves a -> b -> c -> a, a hop at each phase it waits in, prints
#    the undisturbed results and totals, and its close() and join() return: it prints
#    its last line and exits 0, as the undisturbed run does.
# 3. `make -j2` of 6 generated C files moves a -> b mid-build, while both compiles
#    wait at a gate (a FIFO the test holds: each recipe reads a line from it), and
#    finishes on b with the same objects, program and status as the undisturbed build.
# 4. A python3 job that runs a shell pipeline every step moves a -> b -> c -> a while
#    its pipelines run (those after the first move born away from home): each hop
#    waits for the moment between two pipelines, and its output is the undisturbed run's.
# 5. A python3 job with two children forked at home moves a -> b with them; on b it
#    starts children there (posix_spawn, and subprocess's vfork), tells its home children
#    to end and polls waitpid(-1, WNOHANG), then waitid(P_ALL, WNOHANG), while the child
#    born on b runs: the polls see the moved children's ends (statuses 4 and 6, their
#    home PIDs), then the one born on b, then ECHILD. Moved home (b -> a) and out again
#    (a -> b) with two children forked at home since, its blocking waitpid(-1, 0) and
#    waitid(P_ALL) return their ends at home while the child born on b runs on.
# 6. A bash loop with no pause forking a `$(...)` child every round moves a -> b the
#    first try (a child of shadowd's look that has ended and been reaped is not part of
#    the tree: no row for it; one alive gets its moment to end), then home, out and home
#    again (a -> b -> a -> b -> a), and ends at home printing what an undisturbed run
#    prints, status 0 (issue 12 + 15: every `$(...)` after the hops home gets its pipe).
#
# usage: tree_move.sh OPTIONS (below)
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
PY=/usr/bin/python3
[[ -x $PY ]] || { echo "SKIP: $PY is not installed"; exit 77; }
cluster_up a b c
ppid_of() { hx a awk '{ print $4 }' "/proc/$1/stat" 2>/dev/null; }
state_of() { hx a awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null; }
out_has() { grep -qx "$2" "$(jfile "$1" out)"; }
# The python jobs' say/steps_until/wait_for (jobs/steps.py), imported by each script below.
STEPS="import sys; sys.dont_write_bytecode = True; sys.path.insert(0, '$(readlink -f "$(dirname "$0")/jobs")'); from steps import say, steps_until, wait_for"

# --- 1. a family moves whole ---------------------------------------------------------------
FAMILY=$STEPS'
import os, signal, subprocess, sys, time
PAGE, PAGES, FILL = 4096, 2048, 0x5a
buf = bytearray([FILL]) * (PAGE * PAGES)
def churn(k):  # step k writes its number at the start of 32 pages spread over buf
    for j in range(32):
        p = (k * 37 + j * 101) % PAGES
        buf[p * PAGE:p * PAGE + 8] = (k * 64 + j).to_bytes(8, "little")
def exact(steps):  # every page as a replay of steps 0..steps-1 says
    want = {}
    for k in range(steps):
        for j in range(32):
            want[(k * 37 + j * 101) % PAGES] = k * 64 + j
    rest = bytes([FILL]) * (PAGE - 8)
    return all(int.from_bytes(buf[p * PAGE:p * PAGE + 8], "little") == want.get(p, int.from_bytes(bytes([FILL]) * 8, "little"))
               and buf[p * PAGE + 8:(p + 1) * PAGE] == rest for p in range(PAGES))
r, w = os.pipe()
os.write(w, b"in flight before the move\n")
c1 = os.fork()
if c1 == 0:
    os.close(w)
    signal.signal(signal.SIGUSR1, lambda s, f: say("child: SIGUSR1"))
    signal.signal(signal.SIGUSR2, lambda s, f: say("child: SIGUSR2"))
    say("child", os.getpid(), "parent", os.getppid(), "group", os.getpgid(0), os.getpgrp(), "session", os.getsid(0))
    k = 0
    while not os.path.exists("GO"):
        churn(k)
        k += 1
        time.sleep(0.1)
    say("child memory exact", exact(k))
    say("child", os.getpid(), "parent", os.getppid(), "group", os.getpgid(0), os.getpgrp(), "session", os.getsid(0))
    for line in os.fdopen(r):
        say("child read:", line.strip())
    os._exit(3)
c2 = os.fork()
if c2 == 0:
    os._exit(5)
os.close(r)
say("children", c1, c2)
n = 0
late = None
late_status = None
while not os.path.exists("GO"):
    if late is None and os.path.exists("SPAWN"):
        late = subprocess.Popen(["/usr/bin/sleep", "600"])
        say("late child", late.pid)
    if late is not None and late_status is None and os.path.exists("REAP"):
        late.kill()
        late_status = late.wait()
        say("late child status", late_status)
    churn(n)
    n += 1
    say("STEP", n)
    time.sleep(0.1)
say("root memory exact", exact(n))
os.kill(c1, signal.SIGUSR1)
os.write(w, b"written after the move\n")
os.close(w)
pid, st = os.waitpid(c2, 0)
say("zombie", pid == c2, "status", os.waitstatus_to_exitcode(st))
pid, st = os.waitpid(c1, 0)
say("child", pid == c1, "status", os.waitstatus_to_exitcode(st))
if late is not None and late_status is None:
    late.kill()
    say("late child status", late.wait())
sys.exit(7)'
start_job family mig "$PY" -c "$FAMILY" || cluster_end
if ! wait_until 20 eval 'grep -q "^child [0-9]* parent " "$(jfile family out)" && wait_step family 3 1'; then
  fail "the family did not start"; detail "$(jfile family err)" "its stderr"; cluster_end
fi
read -r _ c1 c2 < <(grep -m1 '^children ' "$(jfile family out)")
root=${PID[family]}
# Its group and session at home (the kernel's), as the child must go on seeing them.
ids="child $c1 parent $root group $(hx a awk '{ print $5, $5, "session", $6 }' "/proc/$c1/stat")"
wait_until 10 eval '[[ $(state_of "$c2") == Z ]]'
migrate family b
# Pre-copy: round 1 sends all (16 MiB and more of the two), so there are 2 rounds or more.
precopy_line() { migrated_line | grep -qE "pre-copy, ([2-9]|[1-9][0-9]+) rounds: ([1-9][6-9]|[2-9][0-9]|[1-9][0-9][0-9]+)\.[0-9] MiB sent while it ran"; }
if (( MIG_RC == 0 )) && precopy_line; then
  ok "the family ($root, its child $c1, its zombie $c2) moved a -> b pre-copy: $(migrated_line)"
else
  fail "the family did not move: exit $MIG_RC"
  detail "$MIG_OUT" "migctl's stdout"; detail "$MIG_ERR" "migctl's stderr"
  shadowd_logs a b; restore_log b
  kill_job family; cluster_end
fi
list=$(hm a list 2>/dev/null)
at_b() { awk -v p="$1" '$1 == p { print $3; exit }' <<<"$list"; }
if [[ $(host_of "$(at_b "$root")") == b && $(host_of "$(at_b "$c1")") == b ]] &&
   [[ $(hx a readlink "/proc/$root/exe") == *mig-deputy && $(hx a readlink "/proc/$c1/exe") == *mig-deputy ]] &&
   [[ $(ppid_of "$c1") == "$root" && $(ppid_of "$c2") == "$root" && $(state_of "$c2") == Z ]]; then
  ok "at home the root and its child are deputies listed at b, the child still the root's, the zombie still a zombie"
else
  fail "at home after the move: list '$(tr '\n' '|' <<<"$list")', exes $(hx a readlink "/proc/$root/exe") $(hx a readlink "/proc/$c1/exe"), child's parent $(ppid_of "$c1"), zombie $(state_of "$c2")"
fi
hx a kill -USR2 "$c1"
if wait_until 20 out_has family "child: SIGUSR2"; then
  ok "SIGUSR2 sent at home to the child ($c1) reached it on b"
else
  fail "SIGUSR2 sent at home to the child did not reach it"; shadowd_logs a b
fi
k=$(( $(last_step family) + 3 ))
wait_step family "$k" 30 && ok "the family goes on on b (STEP $k)" || fail "the family does not go on on b (last STEP $(last_step family))"

# The tree moves on whole: b -> c, then home again, c -> a.
tree_hop() {  # tree_hop FROM TO MODE [MIGCTL_OPTION]: MODE the result line must name
  local k=$(( $(last_step family) + 3 ))
  wait_step family "$k" 30
  migrate family "$2" 60 ${4-}
  list=$(hm a list 2>/dev/null)
  if (( MIG_RC == 0 )) && [[ $(host_of "$(at_b "$root")") == "$2" && $(host_of "$(at_b "$c1")") == "$2" ]] &&
     migrated_line | grep -q "$3" && wait_step family $((k + 3)) 30; then
    ok "the tree moved $1 -> $2 whole (at STEP $k), both listed at $2, and goes on: $(migrated_line)"
  else
    fail "the tree's move $1 -> $2: exit $MIG_RC, list '$(tr '\n' '|' <<<"$list")'"
    detail "$MIG_ERR" "migctl's stderr"; shadowd_logs a "$1" "$2"; restore_log "$2"
  fi
}
tree_hop b c "stop-and-copy: " --stop-and-copy
hx a kill -USR2 "$c1"
if wait_until 20 eval '(( $(grep -cx "child: SIGUSR2" "$(jfile family out)") == 2 ))'; then
  ok "SIGUSR2 sent at home to the child reached it on c"
else
  fail "SIGUSR2 sent at home to the child did not reach it on c"
fi

# A child born away from the tree's home (here: on c) comes home with its parent only
# stop-and-copy (hop_faults.sh brings one home): the tree's next move (home) with
# --precopy is refused in one line, the job runs on. The root then kills and waits for it.
touch "$(jfile family SPAWN)"
if wait_until 30 grep -q '^late child ' "$(jfile family out)"; then
  migrate family a 60 --precopy
  k=$(( $(last_step family) + 3 ))
  if one_line_reason && grep -q "cannot move PID $root with its children: the children born on this host of its process $root (sleep) move with it stop-and-copy only" "$MIG_ERR" &&
     grep -q "the job runs on where it was" "$MIG_ERR" && wait_step family "$k" 30; then
    ok "the tree with a child born away from home: its move home with --precopy refused in one line, the job runs on (STEP $k)"
  else
    fail "the tree with a child born away from home: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
  fi
else
  fail "the family started no late child"; detail "$(jfile family err)" "its stderr"
fi
touch "$(jfile family REAP)"
wait_until 30 grep -q '^late child status ' "$(jfile family out)" || fail "the root did not reap its late child"

# Home again: every member restored into its own deputy, a plain local tree.
tree_hop c a "pre-copy, "
list=$(hm a list 2>/dev/null)
local_row() {  # local_row PID: its one row in `migctl list` at a says local, running
  # (before its COMMAND, whose script names the test's directory: "away" in a path)
  local upto=$(head -n 1 <<<"$list" | grep -bo COMMAND | cut -d: -f1)
  [[ $(awk -v p="$1" '$1 == p' <<<"$list" | wc -l) == 1 ]] &&
    awk -v p="$1" '$1 == p' <<<"$list" | cut -c "1-$upto" | grep -q " running " &&
    ! awk -v p="$1" '$1 == p' <<<"$list" | cut -c "1-$upto" | grep -q "away\|migrat"
}
pipes_of() { hx a ls -l "/proc/$1/fd" 2>/dev/null | grep -o 'pipe:\[[0-9]*\]' | sort -u; }
if local_row "$root" && local_row "$c1" && [[ -n $(comm -12 <(pipes_of "$root") <(pipes_of "$c1")) ]] &&
   [[ $(hx a readlink "/proc/$root/exe") != *mig-deputy && $(hx a readlink "/proc/$c1/exe") != *mig-deputy ]] &&
   [[ $(ppid_of "$c1") == "$root" && $(ppid_of "$c2") == "$root" && $(state_of "$c2") == Z ]]; then
  ok "home again the tree is local: migctl list at a shows the root and the child once each, running at a, neither a deputy, their pipe one kernel pipe at home; the child still the root's, the zombie still its zombie"
else
  fail "home again: list '$(tr '\n' '|' <<<"$list")', exes $(hx a readlink "/proc/$root/exe") $(hx a readlink "/proc/$c1/exe"), child's parent $(ppid_of "$c1"), zombie $(state_of "$c2")"
  shadowd_logs a c
fi
hx a kill -USR2 "$c1"
if wait_until 20 eval '(( $(grep -cx "child: SIGUSR2" "$(jfile family out)") == 3 ))'; then
  ok "SIGUSR2 sent at home to the child reached it, local again"
else
  fail "SIGUSR2 sent at home to the child did not reach it home again"
fi

touch "$(jfile family GO)"
want=("$ids" "child: SIGUSR1" "child read: in flight before the move"
      "child read: written after the move" "zombie True status 5" "child True status 3" "late child status -9"
      "child memory exact True" "root memory exact True")
missing=""
if wait_job family 60; then
  for l in "${want[@]}"; do out_has family "$l" || missing+=" '$l'"; done
  [[ $(grep -cx "$ids" "$(jfile family out)") == 2 ]] || missing+=" (getpid/getppid/getpgid/getpgrp/getsid twice as at home: $(grep "^child $c1 parent" "$(jfile family out)" | tr '\n' '|'))"
fi
if [[ $STATUS == 7 && -z $missing ]]; then
  ok "the family's end: the child read both lines of the pipe and got the root's SIGUSR1, its PID, parent, group and session as at home; the root got the zombie's status 5 and the child's 3; the memory both wrote all along is exact; the shell on a got 7"
else
  fail "the family's end: status $STATUS, missing:$missing"
  detail "$(jfile family out)" "its stdout"; detail "$(jfile family err)" "its stderr"
  shadowd_logs a b
fi
kill_job family

# A process whose only child has ended (a zombie) moves: the zombie stays at home,
# the deputy's, and the job's wait for it there gets its status.
LONE='import os, sys, time
c = os.fork()
if c == 0:
    os._exit(4)
while os.waitid(os.P_PID, c, os.WEXITED | os.WNOWAIT) is None:
    pass
print("zombie", c, flush=True)
while not os.path.exists("GO"):
    time.sleep(0.1)
pid, st = os.waitpid(c, 0)
print("reaped", pid == c, "status", os.waitstatus_to_exitcode(st), flush=True)'
start_job lone mig "$PY" -c "$LONE" || cluster_end
wait_until 20 grep -q '^zombie ' "$(jfile lone out)"
migrate lone b
touch "$(jfile lone GO)"
if (( MIG_RC == 0 )) && wait_job lone 30 && [[ $STATUS == 0 ]] && grep -qx "reaped True status 4" "$(jfile lone out)"; then
  ok "a process whose only child is a zombie moved a -> b, and its wait got the zombie's status 4 from home"
else
  fail "a process with a zombie child: migrate exit $MIG_RC, status $STATUS"; detail "$MIG_ERR" "migctl's stderr"
  detail "$(jfile lone out)" "its stdout"; detail "$(jfile lone err)" "its stderr"
fi
kill_job lone

# A tree that comes home while both members wait in calls home (issue 12 + 15: the calls
# in flight): the child in a read of a FIFO at home, the parent in a wait for the child.
# Moved a -> b, then home whole; once home both are local (not deputies, listed once
# each), and the FIFO's line then reaches the child, local, whose status 4 the parent's
# wait gets: output and statuses the undisturbed run's.
WAITER=$STEPS'
import os
c = os.fork()
if c == 0:
    say("child waits")
    with open("GATE") as f:
        line = f.readline()
    say("child read", line.strip())
    os._exit(4)
say("parent waits")
pid, st = os.waitpid(c, 0)
say("child", pid == c, "status", os.waitstatus_to_exitcode(st))'
for j in waiter waiter-ref; do mkdir -p "$(jfile "$j" .)"; mkfifo "$(jfile "$j" GATE)"; done
exec 6<>"$(jfile waiter-ref GATE)" 7<>"$(jfile waiter GATE)"
echo go >&6
start_job waiter-ref plain "$PY" -c "$WAITER"
start_job waiter mig "$PY" -c "$WAITER" || cluster_end
if wait_until 20 eval 'out_has waiter "child waits" && out_has waiter "parent waits"'; then
  wpid=${PID[waiter]}
  wchild=$(hx a pgrep -P "$wpid" | head -n 1)
  migrate waiter b 60
  rc_out=$MIG_RC
  migrate waiter a 60
  list=$(hm a list 2>/dev/null)
  if (( rc_out == 0 && MIG_RC == 0 )) && [[ -n $wchild ]] && local_row "$wpid" && local_row "$wchild" &&
     [[ $(hx a readlink "/proc/$wpid/exe") != *mig-deputy && $(hx a readlink "/proc/$wchild/exe") != *mig-deputy ]] &&
     [[ $(ppid_of "$wchild") == "$wpid" ]]; then
    ok "waiter: a tree waiting in calls home (a read of a FIFO, a wait for the child) moved a -> b -> a, local again at home: $(migrated_line)"
  else
    fail "waiter: a -> b exit $rc_out, b -> a exit $MIG_RC, list '$(tr '\n' '|' <<<"$list")', child $wchild"
    detail "$MIG_ERR" "migctl's stderr"; shadowd_logs a b
  fi
else
  fail "waiter: did not start"; detail "$(jfile waiter err)" "its stderr"
fi
echo go >&7
wait_job waiter-ref 30
if wait_job waiter 30 && [[ $STATUS == 0 && $(status_of waiter-ref) == 0 ]] &&
   cmp -s <(sort "$(jfile waiter out)") <(sort "$(jfile waiter-ref out)") && out_has waiter "child True status 4"; then
  ok "waiter: home again the child read the FIFO's line and the parent's wait got its status 4, output and status 0 the undisturbed run's"
else
  fail "waiter: status $STATUS (undisturbed $(status_of waiter-ref)), output differs from the undisturbed run's"
  diff "$(jfile waiter-ref out)" "$(jfile waiter out)" | head -n 8 | sed 's/^/#     /'; detail "$(jfile waiter err)" "its stderr"
fi
exec 6>&- 7>&-
if ! ended waiter; then
  for p in $(hx a pgrep -P "${PID[waiter]}"); do hx a kill -KILL "$p"; done
  kill_job waiter
fi

# --- 2. refused before the freeze -------------------------------------------------------------
# refused NAME PATTERN: one line matching PATTERN, the job still the program at home.
refused() {
  migrate "$1" b
  if one_line_reason && grep -q "$2" "$MIG_ERR" && grep -q "nothing was frozen, the job runs on at home" "$MIG_ERR" &&
     job_at_home "$1" "$3"; then
    ok "$1: refused in one line ($(sed 's/.*failed: //' "$MIG_ERR" | cut -c1-110)...), runs on at home"
  else
    fail "$1: not refused as it should be (exit $MIG_RC)"; detail "$MIG_ERR" "migctl's stderr"
  fi
}
start_job bare mig /bin/sh -c 'env -u LD_PRELOAD /usr/bin/sleep 600 & echo started; wait' || cluster_end
wait_until 20 out_has bare started
wait_until 20 eval '[[ -n $(hx a pgrep -P "${PID[bare]}" sleep) ]]'
refused bare "its process [0-9]* (sleep) cannot move: .*does not run under mig" "$(readlink -f /bin/sh)"
migrate bare b 40 --postcopy
if one_line_reason && grep -q "a process tree moves pre-copy or stop-and-copy (postcopy is not built for trees yet)" "$MIG_ERR" &&
   job_at_home bare "$(readlink -f /bin/sh)"; then
  ok "bare: --postcopy of a tree refused in one line, runs on at home"
else
  fail "bare: --postcopy of a tree not refused as it should be (exit $MIG_RC)"; detail "$MIG_ERR" "migctl's stderr"
fi
hx a kill -KILL $(hx a pgrep -P "${PID[bare]}" sleep)
wait_job bare 30 || fail "bare: did not end after its child was killed"

# A python3 multiprocessing.Pool(2) sharing a Lock and a Value with its workers (their
# semaphores and the Value's arena are memory the three processes share) moves whole
# a -> b -> c -> a, a hop at each phase it waits in; each phase's map prints its
# results in order; the output is the undisturbed run's, up to its end: close() and
# join() return (its worker handler polls its change notifier, a home pipe, and reads
# it only when the poll says readable; it blocked there when a readiness token
# outlived the bytes it announced, deputy/readiness.h).
POOL='import multiprocessing as mp, os, sys, time
def init(l, v):
    global lock, total
    lock, total = l, v
def work(i):
    with lock:
        total.value += i
    return i * i
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    lock, total = ctx.Lock(), ctx.Value("q", 0, lock=False)
    pool = ctx.Pool(2, initializer=init, initargs=(lock, total))
    for phase in range(1, 5):
        print("phase", phase, flush=True)
        while not os.path.exists("GO%d" % phase):
            time.sleep(0.05)
        print(phase, pool.map(work, range(phase * 10, phase * 10 + 10)), flush=True)
        with lock:
            print("total", total.value, flush=True)
    pool.close()
    pool.join()
    print("pool done", flush=True)'
mkdir -p "$(jfile pool-ref .)" "$(jfile pool .)"
touch "$(jfile pool-ref GO1)" "$(jfile pool-ref GO2)" "$(jfile pool-ref GO3)" "$(jfile pool-ref GO4)"
start_job pool-ref plain "$PY" -c "$POOL"
start_job pool mig "$PY" -c "$POOL"
pool_hop() {  # pool_hop PHASE TO: at "phase PHASE", a hop to TO, then the phase goes on
  if ! wait_until 60 out_has pool "phase $1"; then
    fail "pool: no 'phase $1' within 60 s"; detail "$(jfile pool err)" "its stderr"; return 1
  fi
  migrate pool "$2" 60
  if (( MIG_RC == 0 )) && [[ $(host_of "$(where pool)") == "$2" ]]; then
    ok "pool: the Pool(2) and its workers moved to $2 at phase $1: $(migrated_line)"
  else
    fail "pool: its move to $2 at phase $1: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
    shadowd_logs a b c; restore_log "$2"
  fi
  touch "$(jfile pool "GO$1")"
}
pool_hop 1 b && pool_hop 2 c && pool_hop 3 a
touch "$(jfile pool GO1)" "$(jfile pool GO2)" "$(jfile pool GO3)" "$(jfile pool GO4)"
wait_job pool-ref 120
if ! wait_job pool 60; then
  fail "pool: did not end within 60 s of its last phase (close() and join() hang?)"
  tail -n 3 "$(jfile pool out)" | sed 's/^/#     /'; detail "$(jfile pool err)" "its stderr"
elif cmp -s "$(jfile pool out)" "$(jfile pool-ref out)" && [[ $STATUS == 0 && $(status_of pool-ref) == 0 ]] &&
   [[ $(grep -cx "total 1180" "$(jfile pool-ref out)") == 1 && $(tail -n 1 "$(jfile pool-ref out)") == "pool done" ]]; then
  ok "pool: its 4 phases printed the undisturbed results and totals (the Lock and the Value shared by the 3 processes on each host), its close() and join() returned, status 0"
else
  fail "pool: its output or status (${STATUS}) differs from the undisturbed run's ($(status_of pool-ref))"
  diff "$(jfile pool-ref out)" "$(jfile pool out)" | head -n 12 | sed 's/^/#     /'
  detail "$(jfile pool err)" "its stderr"
fi
if ! ended pool; then
  for p in $(hx a pgrep -P "${PID[pool]}"); do hx a kill -KILL "$p"; done
  kill_job pool
fi

# --- 3. make -j2 moves mid-build ---------------------------------------------------------------
make_project() {  # make_project DIR: 6 C files, a Makefile whose compiles wait at GATE
  local d=$1 i
  mkdir -p "$d"
  for i in 1 2 3 4 5; do
    printf 'int f%d(int x) { int s = 0; for (int k = 0; k < x; k++) s += k * %d %% 7; return s; }\n' "$i" "$i" >"$d/f$i.c"
  done
  { for i in 1 2 3 4 5; do echo "int f$i(int);"; done
    echo '#include <stdio.h>'
    echo 'int main(void) { printf("%d\n", f1(10) + f2(20) + f3(30) + f4(40) + f5(50)); return 0; }'
  } >"$d/main.c"
  printf '%s\n' 'OBJS = f1.o f2.o f3.o f4.o f5.o main.o' 'prog: $(OBJS)' \
    '	cc -o $@ $(OBJS)' '%.o: %.c' '	@echo "gate $<" && read -r line < GATE' \
    '	cc -O1 -c -o $@ $<' >"$d/Makefile"
  mkfifo "$d/GATE"
}
for j in make make-ref; do make_project "$(jfile "$j" .)"; done
exec 8<>"$(jfile make-ref GATE)" 9<>"$(jfile make GATE)"
for i in $(seq 40); do echo go; done >&8
start_job make-ref plain /usr/bin/make -j2
start_job make mig /usr/bin/make -j2
if wait_until 60 eval 'out_has make "gate f1.c" && out_has make "gate f2.c"'; then
  wait_until 10 eval '(( $(hx a pgrep -c -P "${PID[make]}") == 2 ))'
  migrate make b 60
  if (( MIG_RC == 0 )) && [[ $(host_of "$(where make)") == b ]]; then
    ok "make -j2 with two compiles at their gate moved a -> b: $(migrated_line)"
  else
    fail "make -j2 did not move: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"; shadowd_logs a b; restore_log b
  fi
else
  fail "make: its two compiles did not reach the gate within 60 s"; detail "$(jfile make err)" "its stderr"
fi
for i in $(seq 40); do echo go; done >&9
wait_job make-ref 120
wait_job make 120
same=1
for o in f1.o f2.o f3.o f4.o f5.o main.o prog; do cmp -s "$(jfile make "$o")" "$(jfile make-ref "$o")" || same=0; done
if [[ $STATUS == 0 && $(status_of make-ref) == 0 ]] && (( same )) &&
   cmp -s <(sort "$(jfile make out)") <(sort "$(jfile make-ref out)"); then
  ok "make -j2: finished after the move with status 0, its 6 objects and program identical to the undisturbed build's, the same lines printed (in -j2's order)"
else
  fail "make -j2: status $STATUS (undisturbed: $(status_of make-ref)), objects identical: $same"
  detail "$(jfile make out)" "its stdout"; detail "$(jfile make err)" "its stderr"; shadowd_logs a b
fi
exec 8>&- 9>&-
kill_job make

# --- 4. a job that starts short children all the time, also after its move -------------------
# Every step runs a shell pipeline (sh, echo and tr: children and a grandchild) and waits
# for it: after the move a -> b they are born on b, away from home. The moves b -> c and
# c -> a (home) look at the job's children until none is left (at most about 1 s, the
# sender's settle_children.h), so the job moves between two of its steps' children and
# is not refused for one about to end; a refusal may only say "try again" (a child
# started between the look and the freeze), and is tried again as a user would. The
# output is the undisturbed run's: every step's pipeline output and status, in order.
FORKER='import os, subprocess, time
i = 0
while i < 3 or not os.path.exists("STOP"):
    i += 1
    r = subprocess.run("echo %d | tr 0-9 a-j" % (i * i), shell=True, capture_output=True, text=True)
    print("STEP", i, flush=True)
    print("pipeline", i, r.stdout.strip(), r.returncode, flush=True)
    time.sleep(0.02)
print("done", i, flush=True)'
forker_start=$SECONDS
start_job forker mig "$PY" -c "$FORKER" || cluster_end
forker_hop() {  # forker_hop FROM TO: once 3 more steps ran, the hop, retried on "try again" only
  local k=$(( $(last_step forker) + 3 )) tries=0
  wait_step forker "$k" 30
  while :; do
    tries=$((tries + 1))
    migrate forker "$2" 60
    (( MIG_RC != 0 && tries < 10 )) && grep -q "try again" "$MIG_ERR" || break
  done
  if (( MIG_RC == 0 )) && [[ $(host_of "$(where forker)") == "$2" ]] && wait_step forker $(( $(last_step forker) + 3 )) 30; then
    ok "forker: a job starting a pipeline every step moved $1 -> $2 (try $tries) and goes on: $(migrated_line)"
  else
    fail "forker: its move $1 -> $2 (try $tries): exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
    shadowd_logs a "$1" "$2"
  fi
}
forker_hop a b && forker_hop b c && forker_hop c a
touch "$(jfile forker STOP)"
if wait_job forker 60; then
  n=$(last_step forker)
  want=$(for ((i = 1; i <= n; i++)); do echo "STEP $i"; echo "pipeline $i $(echo $((i * i)) | tr 0-9 a-j) 0"; done; echo "done $n")
fi
if [[ $STATUS == 0 ]] && [[ $(cat "$(jfile forker out)") == "$want" ]]; then
  ok "forker: its $n steps' pipelines (started at home, on b, on c and home again) printed what an undisturbed run prints, status 0 ($((SECONDS - forker_start)) s for this part)"
else
  fail "forker: status $STATUS, output not the undisturbed run's"
  diff <(echo "$want") "$(jfile forker out)" | head -n 8 | sed 's/^/#     /'; detail "$(jfile forker err)" "its stderr"
fi
kill_job forker

# --- 5. a poll for any child sees children at home and children born away ---------------------
POLLER=$STEPS'
import os, subprocess, time
def child(status):
    k = os.fork()
    if k == 0:
        while not os.path.exists("END"):
            time.sleep(0.05)
        os._exit(status)
    return k
home = [child(4), child(6)]
steps_until("MOVED")
sp = os.posix_spawn("/usr/bin/true", ["true"], dict(os.environ))
pid, st = os.waitpid(sp, 0)
say("posix_spawn child born away", sp > 4194304, pid == sp, "status", os.waitstatus_to_exitcode(st))
s = subprocess.Popen(["/usr/bin/sleep", "600"])
say("vfork child born away", s.pid > 4194304)
open("END", "w").close()
seen = {}
deadline = time.monotonic() + 60  # a bound on a failure, not a speed goal
while len(seen) < 2 and time.monotonic() < deadline:
    if not seen:  # the first by waitpid, the second by waitid
        pid, st = os.waitpid(-1, os.WNOHANG)
        code = os.waitstatus_to_exitcode(st) if pid else None
    else:
        r = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
        pid, code = (r.si_pid, r.si_status) if r is not None else (0, None)
    if pid != 0:
        seen[pid] = code
    else:
        time.sleep(0.02)
say("home children reaped by waitpid then waitid:", sorted(seen) == sorted(home), "statuses", *sorted(seen.values()))
say("a poll with the child born away left:", os.waitpid(-1, os.WNOHANG))  # home says ECHILD, remembered
s.kill()
pid, st = os.waitpid(-1, 0)
say("reaped", "child born away" if pid == s.pid else pid, "status", os.waitstatus_to_exitcode(st))
try:
    say("left", os.waitpid(-1, os.WNOHANG))
except ChildProcessError:
    say("no child left")
steps_until("BACK")  # moved home meanwhile: its next child is born at home
again = [child(5), child(7)]
steps_until("MOVED2")
s = subprocess.Popen(["/usr/bin/sleep", "600"])
open("END", "w").close()
pid, st = os.waitpid(-1, 0)  # blocking, while the child born on b runs on
r = os.waitid(os.P_ALL, 0, os.WEXITED)  # the same
say("after a return home and a move out, home children reaped by waitpid then waitid:",
    sorted([pid, r.si_pid]) == sorted(again), "statuses", *sorted([os.waitstatus_to_exitcode(st), r.si_status]))
s.kill()
say("reaped", "child born away" if os.waitpid(-1, 0)[0] == s.pid else "?")'
start_job poller mig "$PY" -c "$POLLER" || cluster_end
if wait_step poller 3 20; then
  migrate poller b 60
  if (( MIG_RC == 0 )) && [[ $(host_of "$(where poller)") == b ]]; then
    rm -f "$(jfile poller END)"
    touch "$(jfile poller MOVED)"
    # Home again, then out again with a child forked at home since.
    if wait_until 90 out_has poller "no child left" && wait_step poller $(( $(last_step poller) + 3 )) 30 &&
       migrate poller a 60 && rm -f "$(jfile poller END)" && touch "$(jfile poller BACK)" &&
       wait_step poller $(( $(last_step poller) + 3 )) 30 && migrate poller b 60; then
      touch "$(jfile poller MOVED2)"
    else
      fail "poller: its move home and out again: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
    fi
    wait_job poller 90
    want=$(printf '%s\n' "posix_spawn child born away True True status 0" "vfork child born away True" \
      "home children reaped by waitpid then waitid: True statuses 4 6" \
      "a poll with the child born away left: (0, 0)" "reaped child born away status -9" "no child left" \
      "after a return home and a move out, home children reaped by waitpid then waitid: True statuses 5 7" "reaped child born away")
    got=$(grep -av '^STEP ' "$(jfile poller out)")
    if [[ $STATUS == 0 && $got == "$want" ]]; then
      ok "poller: after its move a -> b with its two children, waitpid(-1, WNOHANG) and waitid(P_ALL, WNOHANG) on b saw the moved children end at home (statuses 4 and 6) while a child born on b ran, then that one, then ECHILD; moved home and out again with two new children, its blocking waitpid(-1) and waitid(P_ALL) returned their ends at home while a child born on b ran; posix_spawn and vfork children born on b have virtual PIDs"
    else
      fail "poller: status $STATUS, output not as expected"
      diff <(echo "$want") <(echo "$got") | head -n 8 | sed 's/^/#     /'; detail "$(jfile poller err)" "its stderr"
    fi
  else
    fail "poller: its move a -> b: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"; shadowd_logs a b
  fi
else
  fail "poller: did not start"; detail "$(jfile poller err)" "its stderr"
fi
kill_job poller
# --- 6. a shell loop forking a short child with no pause ----------------------------------------
# Each round's `$(...)` is a child of bash for a moment: shadowd's look lists one (its
# record made), and by the sender's look it has ended and been reaped, another running.
# The one gone is not part of the tree (no record, deputy or row for it); the one alive
# gets its moment to end, also once the loop is frozen (its zombie stays at home, the
# deputy's to reap). It moves a -> b at a printed line, the first try, then home, out
# and home again. Away it is frozen between two children, often holding the read end of
# a `$(...)` pipe whose writer has ended: that pipe is its own (made anew where it
# lands, with the bytes it has not read; it came home as /dev/null, with a warning on
# the job's stderr). After a hop it resumed from ("try again") or was restored from, its
# `$(...)` children closed the number of the hop's control connection, their pipe's
# (shim/control_thread.cc: EBADF, "cannot duplicate pipe as fd 1", empty STEP lines).
# Its output must be the undisturbed run's, its stderr empty.
BASHLOOP='i=0; while (( i < 3 )) || [[ ! -e STOP ]]; do x=$(echo $i); i=$((i+1)); echo "STEP $x"; done; echo "done $i"'
bashloop_start=$SECONDS
start_job bashloop mig /bin/bash -c "$BASHLOOP" || cluster_end
bl_hop() {  # bl_hop TO TRIES: at a STEP line 200 on, the hop (again on "try again" only, up to TRIES tries), then the loop goes on
  local k=$(( $(last_step bashloop) + 200 )) tries=0
  wait_step bashloop "$k" 30
  while :; do
    tries=$((tries + 1))
    migrate bashloop "$1" 60
    (( MIG_RC != 0 && tries < $2 )) && grep -q "try again" "$MIG_ERR" || break
  done
  list=$(hm a list 2>/dev/null)
  if (( MIG_RC == 0 )) && [[ $(host_of "$(awk -v p="${PID[bashloop]}" '$1 == p { print $3; exit }' <<<"$list")") == "$1" ]] &&
     wait_step bashloop $(( $(last_step bashloop) + 200 )) 30; then
    ok "bashloop: a bash loop forking \$(...) with no pause moved to $1 at STEP $k (try $tries) and goes on: $(migrated_line)"
  else
    fail "bashloop: its move to $1 at STEP $k (try $tries): exit $MIG_RC, list '$(tr '\n' '|' <<<"$list")'"
    detail "$MIG_ERR" "migctl's stderr"; shadowd_logs a b; restore_log "$1"
    return 1
  fi
}
if wait_step bashloop 3 20 && bl_hop b 1; then
  # The root only, at b: no row for a `$(...)` child of shadowd's look.
  rows=$(awk -v w="${ADDR[b]}:$PORT" '$3 == w' <<<"$list")
  if [[ $(wc -l <<<"$rows") == 1 && $(awk '{ print $1 }' <<<"$rows") == "${PID[bashloop]}" ]]; then
    ok "bashloop: at home \`migctl list\` shows the loop at b and no row for a \$(...) child"
  else
    fail "bashloop: the rows at b in \`migctl list\`: '$(tr '\n' '|' <<<"$rows")'"
  fi
  bl_hop a 10 && bl_hop b 10 && bl_hop a 10
fi
loop_output_exact bashloop "a -> b -> a -> b -> a, $((SECONDS - bashloop_start)) s for this part" a
kill_job bashloop
cluster_end
