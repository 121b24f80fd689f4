#!/bin/bash
# born_away.sh: children born away from home follow the job on its next hop (issue 12).
# A python3 job moves a -> b alone; on b it starts a child (subprocess.Popen, a pipe
# each way) which starts a grandchild (a sh reading a line from a pipe). Moved b -> c
# with them (stop-and-copy: the child and grandchild keep their virtual PIDs, the pipes
# their bytes), the child still answers through the pipe, the grandchild gets its line,
# and the job's wait gets the child's status 5 (the child's gets the grandchild's 3).
# A hop to c while a process there has the child's PID of b is refused by c before
# anything is frozen. With them running the job then comes home (c -> a): the child and
# grandchild are forked at a with their PIDs of c, so the job's virtual PID for the
# child still names it; the child answers through its pipe there, the job's wait gets
# its status (a hop out while the child runs, and while it has ended and is not yet
# waited for, is refused in one line); then the job moves out again (a -> b) and
# finishes there, its output the one an undisturbed run prints.
# A python3 tree (root and a child member) moved a -> b whole, whose member starts a
# subprocess on b, moves b -> c with it (in the member's image): outputs and statuses
# the undisturbed run's.
# A job moved a -> b execs bash there, which forks a `$(...)` child (running sleep)
# every round; moved b -> c while they come and go, every round's number still comes
# back through its pipe, and its output is the undisturbed run's. A child born on b
# without libmig.so refuses the hop b -> c in one line, naming it. Two multiprocessing
# workers born on b move b -> c and home with the socketpairs between them and the job,
# messages in flight (python's multiprocessing.Pipe; datagram and seqpacket pairs too).
#
# usage: born_away.sh OPTIONS (below)
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
PY=/usr/bin/python3
[[ -x $PY ]] || { echo "SKIP: $PY is not installed"; exit 77; }
cluster_up a b c
out_has() { grep -qx "$2" "$(jfile "$1" out)"; }
# output_exact NAME WHAT: NAME, waited for, printed $want (but its STEP and REAL lines),
# nothing on stderr, and ended with status 0.
output_exact() {
  local got
  got=$(grep -av '^STEP \|^REAL ' "$(jfile "$1" out)")
  if [[ $STATUS == 0 && $got == "$want" && ! -s $(jfile "$1" err) ]]; then
    ok "$1: $2; output the undisturbed run's, nothing on stderr, status 0"
  else
    fail "$1: status $STATUS, output not the undisturbed run's"
    diff <(echo "$want") <(echo "$got") | head -n 12 | sed 's/^/#     /'; detail "$(jfile "$1" err)" "its stderr"
    restore_log c
  fi
}
# The python jobs' say/steps_until/wait_for (jobs/steps.py), imported by each script below.
STEPS="import sys; sys.dont_write_bytecode = True; sys.path.insert(0, '$(readlink -f "$(dirname "$0")/jobs")'); from steps import say, steps_until, wait_for"

# The child echoes each line it reads; at EOF it hands a line to its own child (the
# grandchild, started at once, on b) and says what that printed and its status.
CHILD='import os, subprocess, sys
g = subprocess.Popen(["/bin/sh", "-c", "read x; echo grandchild got $x; exit 3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
for line in sys.stdin:
    sys.stdout.write("got " + line)
    sys.stdout.flush()
sys.stdout.write("ids %d %d\n" % (os.getpid(), os.getppid()))
g.stdin.write(b"the end\n")
g.stdin.close()
said = g.stdout.read().decode().strip()
sys.stdout.write(said + ", status " + str(g.wait()) + "\n")
sys.exit(5)'
FAMILY=$STEPS'
import os, subprocess, sys, time
steps_until("MOVED")
p = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
say("child born away:", p.pid > 4194304)
say("REAL", p.pid - 4194304)  # its PID on b (not compared)
p.stdin.write(b"before the hop\n")
p.stdin.flush()
say("child says", p.stdout.readline().decode().strip())
p.stdin.write(b"in flight across the hop\n")
p.stdin.flush()
steps_until("HOPPED")
say("child says", p.stdout.readline().decode().strip())
p.stdin.write(b"after the hop\n")
p.stdin.close()
said = p.stdout.read().decode().strip().split("\n")
ids = [int(x) for x in said.pop(1).split()[1:]]
say("child says", *said)
say("child getpid and getppid as the job knows them:", ids == [p.pid, os.getpid()])
steps_until("REAPED")  # (its child ended: a zombie until the wait below)
os.kill(p.pid, 0)
say("child status", p.wait())
steps_until("END")
say("done")'
want="child born away: True
child says got before the hop
child says got in flight across the hop
child says got after the hop grandchild got the end, status 3
child getpid and getppid as the job knows them: True
child status 5
done"

# The undisturbed run: plain, every file there from the start.
mkdir -p "$(jfile ref data)" && touch "$(jfile ref MOVED)" "$(jfile ref HOPPED)" "$(jfile ref REAPED)" "$(jfile ref END)"
start_job ref plain "$PY" -c "$FAMILY" "$CHILD" || cluster_end
# (Its child is born at home: a PID of its own, not a virtual one.)
if ! wait_job ref 60 || [[ $STATUS != 0 || $(grep -av '^STEP \|^REAL ' "$(jfile ref out)") != "${want/born away: True/born away: False}" ]]; then
  fail "the undisturbed run: status $STATUS, its output not the expected"; detail "$(jfile ref out)" "its output"; cluster_end
fi
start_job family mig "$PY" -c "$FAMILY" "$CHILD" || cluster_end
if ! { wait_step family 3 20 && migrate family b 60; }; then
  fail "family: its move a -> b: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"; kill_job family; cluster_end
fi
# The simulated hosts' PIDs are small and close: b's next ones far from any of a's, so
# that a's check of the children's PIDs at their hop home finds them free.
hx b bash -c 'echo 20000 >/proc/sys/kernel/ns_last_pid'
touch "$(jfile family MOVED)"
if ! wait_until 30 out_has family "child says got before the hop"; then
  fail "family: its child born on b did not answer"; detail "$(jfile family err)" "its stderr"; kill_job family; cluster_end
fi
# Its child's PID on b taken on c: c refuses the hop before anything is frozen.
real=$(awk '$1 == "REAL" { print $2 }' "$(jfile family out)")
hx c bash -c "echo $((real - 1)) >/proc/sys/kernel/ns_last_pid; sleep 600 & wait" >/dev/null 2>&1 &
bg_pids+=($!)
if wait_until 10 hx c kill -0 "$real" 2>/dev/null && [[ $(hx c cat "/proc/$real/comm" 2>/dev/null) == sleep ]]; then
  migrate family c 60
  if one_line_reason && grep -q "has PID $real, which a process here has" "$MIG_ERR" && [[ $(host_of "$(where family)") == b ]]; then
    ok "family: its hop to c while c has its child's PID $real is refused by c in one line, it runs on at b: $(cat "$MIG_ERR")"
  else
    fail "family: its hop to c while c has its child's PID $real: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
  fi
  hx c kill -KILL "$real"
  wait_until 10 eval '! hx c kill -0 "$real" 2>/dev/null'
else
  echo "# (PID $real could not be taken on c: that check skipped)"
fi
# b -> c with the child (and its grandchild) born on b; one line in flight in the pipe.
if migrate family c 60 && [[ $(host_of "$(where family)") == c ]]; then
  ok "family: b -> c with its child and grandchild born on b: $(migrated_line)"
else
  fail "family: its move b -> c with its children born on b: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
  shadowd_logs b c; restore_log c
  kill_job family; cluster_end
fi
# Home with them still running (step 3): each child forked at a with its PID of c, the
# job's home fds its deputy's, the child's the deputy's under its own numbers.
if migrate family a 60 && [[ $(host_of "$(where family)") == a ]] && migrated_line | grep -q "stop-and-copy"; then
  ok "family: c -> a with its child and grandchild born away still running: $(migrated_line)"
else
  fail "family: its hop home with children born away: exit $MIG_RC, at '$(where family)'"; detail "$MIG_ERR" "migctl's stderr"
  shadowd_logs a c; detail "$(jfile family err)" "its stderr"
fi
real=$(awk '$1 == "REAL" { print $2 }' "$(jfile family out)")
where family >/dev/null  # (migctl list at a, in $T/list.last)
if [[ $(hx a cat "/proc/$real/status" 2>/dev/null | awk '$1 == "PPid:" { print $2 }') == "${PID[family]}" &&
      $(host_of "$(awk -v p="$real" '$1 == p { print $3; exit }' "$T/list.last")") == a ]]; then
  ok "family: at a its child runs as PID $real (its PID of b), the job's own child, listed at a"
else
  fail "family: at a no child of the job with PID $real listed there"; sed 's/^/#     /' "$T/list.last"
  hx a ps -ef | grep -v ' \[' | tail -n 20 | sed 's/^/#     /'
fi
# Out again while that child runs: refused in one line (it cannot keep its PID yet).
migrate family b 60
if one_line_reason && grep -q "born away from home, came home with it and cannot move again yet" "$MIG_ERR" &&
   [[ $(host_of "$(where family)") == a ]]; then
  ok "family: its hop out again while its child born away runs at home is refused in one line: $(cat "$MIG_ERR")"
else
  fail "family: its hop out again with its child born away at home: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
fi
touch "$(jfile family HOPPED)"
# Ended and not yet waited for (a zombie at home, no shim to answer): refused in one
# line too, named by the job's table (else its status would be lost to the job away).
if wait_until 30 grep -q "^child getpid" "$(jfile family out)" && wait_step family $(( $(last_step family) + 2 )) 30 &&
   [[ $(hx a awk '$1 == "State:" { print $2 }' "/proc/$real/status" 2>/dev/null) == Z ]]; then
  migrate family b 60
  if one_line_reason && grep -q "has ended without being waited for" "$MIG_ERR" && [[ $(host_of "$(where family)") == a ]]; then
    ok "family: its hop out while its child born away is a zombie at home is refused in one line: $(cat "$MIG_ERR")"
  else
    fail "family: its hop out with its child born away a zombie at home: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
  fi
else
  fail "family: its child born away did not end (a zombie, PID $real) at home"; detail "$(jfile family err)" "its stderr"
fi
touch "$(jfile family REAPED)"
# Once the child has ended and been waited for (at home), the job moves out again.
if wait_until 30 out_has family "child status 5" && wait_step family $(( $(last_step family) + 3 )) 30 &&
   migrate family b 60 && [[ $(host_of "$(where family)") == b ]]; then
  ok "family: once its child ended and was waited for at home, a -> b again: $(migrated_line)"
else
  fail "family: its move out again once the child ended: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
  detail "$(jfile family err)" "its stderr"
fi
touch "$(jfile family END)"
wait_job family 30
output_exact family "the child born on b answered through its pipe before, across and after the hops b -> c -> a, its grandchild got its line and status 3, the job's wait at home got the child's status 5 (its PID a virtual one)"
kill_job family

# --- a tree's member with a child born on b ------------------------------------------------
# The root forks a child at home (a member: the tree moves a -> b whole); on b the
# member starts a subprocess (a sh reading a line, born away from home). The tree moves
# b -> c with it in the member's image (stop-and-copy); there the sh gets its line
# through its pipe, the member's wait its status 3, the root's the member's 5.
MEMBER=$STEPS'
import os, subprocess, sys, time
kid = os.fork()
if kid == 0:
    wait_for("MOVED")
    g = subprocess.Popen(["/bin/sh", "-c", "read x; echo grandchild got $x; exit 3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    say("member born away:", g.pid > 4194304)
    wait_for("HOPPED")
    g.stdin.write(b"its line\n")
    g.stdin.close()
    say("member says", g.stdout.read().decode().strip() + ", status", g.wait())
    os._exit(5)
n = 0
while True:
    pid, status = os.waitpid(kid, os.WNOHANG)
    if pid:
        break
    n += 1
    say("STEP", n)
    time.sleep(0.05)
say("member status", os.waitstatus_to_exitcode(status))'
want="member born away: True
member says grandchild got its line, status 3
member status 5"
mkdir -p "$(jfile tref data)" && touch "$(jfile tref MOVED)" "$(jfile tref HOPPED)"
start_job tref plain "$PY" -c "$MEMBER" || cluster_end
if ! wait_job tref 60 || [[ $STATUS != 0 || $(grep -av '^STEP ' "$(jfile tref out)") != "${want/born away: True/born away: False}" ]]; then
  fail "the tree's undisturbed run: status $STATUS, its output not the expected"; detail "$(jfile tref out)" "its output"
fi
start_job tree mig "$PY" -c "$MEMBER" || cluster_end
if wait_step tree 3 20 && migrate tree b 60 --stop-and-copy && [[ $(host_of "$(where tree)") == b ]]; then
  touch "$(jfile tree MOVED)"
  wait_until 30 grep -q "^member born away" "$(jfile tree out)"
  k=$(( $(last_step tree) + 3 ))
  wait_step tree $k 30
  migrate tree c 60
  member=$(hx a pgrep -P "${PID[tree]}" | head -n 1)  # its deputy at home, the root's deputy's child
  if (( MIG_RC == 0 )) && [[ $(host_of "$(where tree)") == c && -n $member ]] && migrated_line | grep -q "stop-and-copy" &&
     [[ $(host_of "$(awk -v p="$member" '$1 == p { print $3; exit }' "$T/list.last")") == c ]]; then
    ok "tree: b -> c with its member's child born on b (at STEP $k), root and member listed at c: $(migrated_line)"
  else
    fail "tree: its move b -> c with its member's child born on b: exit $MIG_RC, member $member, listed at $(awk '$1 ~ /^[0-9]+$/ && NF > 2 { printf "%s:%s ", $1, $3 }' "$T/list.last")"
    detail "$MIG_ERR" "migctl's stderr"; shadowd_logs b c; restore_log c
  fi
else
  fail "tree: its move a -> b: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
fi
touch "$(jfile tree HOPPED)"
wait_job tree 30
output_exact tree "on c the member's child born on b got its line through its pipe, the member's wait its status 3, the root's the member's 5"
kill_job tree

# --- a child born on b without libmig.so: refused ------------------------------------------
BARE=$STEPS'
import os, subprocess, time
wait_for("MOVED")
s = subprocess.Popen(["/usr/bin/env", "-u", "LD_PRELOAD", "/usr/bin/sleep", "600"])
os.write(1, b"started\n")
wait_for("END")
s.kill()
os.write(1, b"child status %d\n" % s.wait())'
start_job bare mig "$PY" -c "$BARE" || cluster_end
if migrate bare b 60; then
  touch "$(jfile bare MOVED)"
  wait_until 30 out_has bare started
  migrate bare c 60
  if one_line_reason && grep -q "is not under libmig.so" "$MIG_ERR" && [[ $(host_of "$(where bare)") == b ]]; then
    ok "bare: its hop b -> c with a child born on b without libmig.so is refused in one line, it runs on at b: $(cat "$MIG_ERR")"
  else
    fail "bare: its hop b -> c with a child not under libmig.so: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
  fi
else
  fail "bare: its move a -> b: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
fi
touch "$(jfile bare END)"
if wait_job bare 30 && [[ $STATUS == 0 && $(cat "$(jfile bare out)") == $'started\nchild status -9' ]]; then
  ok "bare: ended on b as undisturbed (its child killed, status -9), status 0"
else
  fail "bare: status $STATUS, output '$(tr '\n' '|' <"$(jfile bare out)")'"; detail "$(jfile bare err)" "its stderr"
fi
kill_job bare

# --- multiprocessing workers born on b, socketpairs between them and with the job --------
# On b the job starts two multiprocessing workers: a Pipe (a stream socketpair, the job
# keeping both ends as python's examples do) and a datagram socketpair to the first, a
# seqpacket socketpair between the two workers alone, and one of its own. Moved b -> c
# with messages in flight on each (one each way on the Pipe, two datagrams, two
# seqpackets, one on its own pair): every message arrives whole and in order
# (boundaries kept), they talk on after the hop; then home (c -> a) with the workers waiting on their socketpairs, a line goes through
# both of them there, and the job's joins get the workers' exit codes.
PIPES=$STEPS'
import multiprocessing, socket, sys
def first(conn, dgram, seq):
    for s in (mine, dj, sb):
        s.close()
    conn.send(conn.recv() + " back")
    seq.send(b"one")
    seq.send(b"two two")
    conn.send("worker in flight")
    wait_for("HOPPED")
    conn.send([conn.recv(), dgram.recv(100).decode(), dgram.recv(100).decode(), seq.recv(100).decode()])
    conn.send(conn.recv() + " back")
    seq.send(conn.recv().encode())
    conn.send(seq.recv(100).decode())
    sys.exit(7)
def second(seq):
    for s in (mine, theirs, dj, dw, sa):
        s.close()
    wait_for("HOPPED")
    seq.send(b"|".join([seq.recv(100), seq.recv(100)]))
    seq.send(seq.recv(100) + b", the second worker says")
    sys.exit(4)
steps_until("MOVED")
fork = multiprocessing.get_context("fork")
mine, theirs = fork.Pipe()
dj, dw = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
w1 = fork.Process(target=first, args=(theirs, dw, sa))
w1.start()
w2 = fork.Process(target=second, args=(sb,))
w2.start()
for s in (dw, sa, sb):
    s.close()
own, back = socket.socketpair()  # held by the job alone
say("workers born away:", w1.pid > 4194304, w2.pid > 4194304)
mine.send("hello")
say("worker says", mine.recv())
mine.send("job in flight")
dj.send(b"dgram one")
dj.send(b"dgram two, longer")
own.sendall(b"its own pair")
mine.poll(None)  # its "worker in flight" is here: every message is on its way
say("all in flight")
steps_until("HOPPED")
say("worker says", mine.recv())
say("worker got", *mine.recv())
say("job got", back.recv(100).decode())
mine.send("after the hop")
say("worker says", mine.recv())
steps_until("HOME")
mine.send("at home")
say("worker says", mine.recv())
w1.join()
w2.join()
say("exit codes", w1.exitcode, w2.exitcode)'
want="workers born away: True True
worker says hello back
all in flight
worker says worker in flight
worker got job in flight dgram one dgram two, longer one|two two
job got its own pair
worker says after the hop back
worker says at home, the second worker says
exit codes 7 4"
mkdir -p "$(jfile pref data)" && touch "$(jfile pref MOVED)" "$(jfile pref HOPPED)" "$(jfile pref HOME)"
start_job pref plain "$PY" -c "$PIPES" || cluster_end
if ! wait_job pref 60 || [[ $STATUS != 0 || $(grep -av '^STEP ' "$(jfile pref out)") != "${want/born away: True True/born away: False False}" ]]; then
  fail "the workers' undisturbed run: status $STATUS, its output not the expected"; detail "$(jfile pref out)" "its output"
fi
start_job pipes mig "$PY" -c "$PIPES" || cluster_end
if wait_step pipes 3 20 && migrate pipes b 60; then
  touch "$(jfile pipes MOVED)"
  wait_until 30 out_has pipes "all in flight"
  if migrate pipes c 60 && [[ $(host_of "$(where pipes)") == c ]] && migrated_line | grep -q "stop-and-copy"; then
    ok "pipes: b -> c with its multiprocessing workers born on b and messages in flight on their socketpairs: $(migrated_line)"
  else
    fail "pipes: its move b -> c with its workers and their socketpairs: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
    shadowd_logs b c; restore_log c
  fi
else
  fail "pipes: its move a -> b: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
fi
touch "$(jfile pipes HOPPED)"
# Home with the workers waiting on their socketpairs (each forked at a with its PID of b).
if wait_until 30 out_has pipes "worker says after the hop back" && migrate pipes a 60 &&
   [[ $(host_of "$(where pipes)") == a ]]; then
  ok "pipes: c -> a with its workers waiting on their socketpairs: $(migrated_line)"
else
  fail "pipes: its hop home with its workers: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"; shadowd_logs a c
fi
touch "$(jfile pipes HOME)"
wait_job pipes 30
output_exact pipes "on c every message in flight on the Pipe, the datagram and the seqpacket socketpairs arrived whole and in order, they talked on there and back home (a line through both workers), the joins got exit codes 7 and 4"
kill_job pipes

# --- a bash loop whose `$(...)` children are born on b ---------------------------------------
# Until MOVED python3 counts steps (no child: it leaves home as one process), then
# execs bash there, whose every round forks a `$(...)` child on b that runs sleep (a
# grandchild) and writes the round's number into its pipe. Moved b -> c while they come
# and go (caught with one, it is carried; between two, the loop moves alone): each
# round's number must come back through its pipe, the output the undisturbed run's.
LOOP='n=$1; i=0; while [[ ! -e STOP ]]; do x=$(sleep 0.1; echo $i); [[ $x == "$i" ]] || echo "BAD $i $x"; echo "STEP $n"; n=$((n + 1)); i=$((i + 1)); done
echo "done $n"'
WAITER='import os, sys, time
n = 0
while not os.path.exists("MOVED"):
    os.write(1, b"STEP %d\n" % n)
    n += 1
    time.sleep(0.05)
os.execv("/bin/bash", ["bash", "-c", sys.argv[1], "bash", str(n)])'
start_job loop mig "$PY" -c "$WAITER" "$LOOP" || cluster_end
if wait_step loop 3 20 && migrate loop b 60; then
  touch "$(jfile loop MOVED)"
  # A pre-copy hop (the loop had no child at the first look) that finds one started
  # at the freeze says "try again": tried again, as a user would (up to 3 times).
  k=$(( $(last_step loop) + 5 ))
  wait_step loop $k 30
  for try in 1 2 3; do
    migrate loop c 60 && break
    grep -q "try again" "$MIG_ERR" || break
  done
  if (( MIG_RC == 0 )) && [[ $(host_of "$(where loop)") == c ]]; then
    ok "loop: a -> b, then b -> c at STEP $k (try $try) while its \$(...) children born on b came and went: $(migrated_line)"
  else
    fail "loop: its move b -> c: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"; shadowd_logs b c; restore_log c
  fi
  wait_step loop $(( $(last_step loop) + 5 )) 30
else
  fail "loop: its move a -> b: exit $MIG_RC"; detail "$MIG_ERR" "migctl's stderr"
fi
loop_output_exact loop "every round's \$(...) on b and c gave back its number" c
kill_job loop
cluster_end
