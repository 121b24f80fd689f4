#!/bin/bash
# loopback_migration.sh: live migration between two shadowd on loopback (no
# root, no namespaces: the fallback the cluster suite's harness tests complement).
# A job started under libmig writes numbered lines to a file through stdio and to a
# second file with raw write(2); it is migrated A -> B -> A mid-run. Checks: output
# exact, nothing lost or repeated; the parent's wait gets the job's exit status; the
# PID never changes; `kill -TERM` to the PID at home reaches the job's handler;
# pipelined writes of several threads to a pipe at home keep their order, and a burst
# written just before the job exits is all there when its parent sees the end; a job
# away kills and reaps the child it forked at home, and its own children get virtual
# PIDs above pid_max that fork, getpid, getppid and waitpid agree on; a TCP client
# streaming to a sink at home, migrated there and back mid-stream, delivers every
# byte (its socket stayed at home); `producer | cat | consumer` with cat migrated
# mid-stream gives the consumer exactly what it gets undisturbed; a blocking TCP
# server keeps its connection and its listening socket at home across A -> B -> A
# (a client mid-conversation gets every echo, new clients are served); a UDP echo
# job keeps its bound address and answers every datagram, whole, to its sender,
# across A -> B -> A; an edge-triggered epoll server and a libuv server each keep
# three streaming clients and serve a new one across A -> B -> A; a call
# sent to the relay with a wrong job token runs nothing; and a
# migration to a dead address or to a shadowd with another key leaves the job running
# where it was, with one line saying why. The first job's checks run first; the other
# cases, each with its own job, then run in three lanes at once (the end of this file).
#
# usage: loopback_migration.sh SHADOWD MIGCTL LIBMIG JOB_PROGRAM ORDERED_WRITERS FAMILY_JOB
#          STREAM_CLIENT ECHO_SERVER UDP_ECHO EPOLL_ECHO_SERVER UV_ECHO_SERVER
set -u
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3") job=$(realpath "$4")
writers=$(realpath "$5") family=$(realpath "$6") streamer=$(realpath "$7") server=$(realpath "$8")
udpecho=$(realpath "$9") evserver=$(realpath "${10}") uvserver=$(realpath "${11}")
source "$(dirname "$0")/lib/loopback_lib.sh" loopback
steady=$LOOPBACK_LIB_DIR/steady_client.py
new_key "$dir/key"; new_key "$dir/otherkey"
up_shadowd a "$dir/key" pa && up_shadowd b "$dir/key" pb && up_shadowd c "$dir/otherkey" pc || exit 1

# The job: JOB_PROGRAM STEPS OUT_FILE, prints "step N pid P" per step to stdout
# (redirected to a file here) and appends "raw N" to OUT_FILE with write(2).
cd "$dir"
( LD_PRELOAD=$libmig "$job" 60 "$dir/raw.txt" > "$dir/out.txt" 2> "$dir/err.txt"; echo "$?" > "$dir/status" ) &
waiter=$!
pids+=($waiter)
wait_line "$dir/out.txt" '^step 3 ' || bad "the job started" "$dir/out.txt" "$dir/err.txt"
jobpid=$(awk '/^step 1 /{print $4; exit}' "$dir/out.txt")

A migrate "$jobpid" --to 127.0.0.1:$((pc + 0)) > "$dir/m-badkey.out" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "stays where it was" "$dir/m-badkey.out" && [ -z "$(ls "$dir/c/spool" 2>/dev/null)" ]; then
  ok "a shadowd with another cluster key is refused, nothing restored there"
else bad "bad key (exit $rc)" "$dir/m-badkey.out" "$dir/c.log"; fi
A migrate "$jobpid" --to 127.0.0.1:1 > "$dir/m-dead.out" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "stays where it was" "$dir/m-dead.out"; then
  ok "an unreachable destination is named and the job stays"
else bad "unreachable (exit $rc)" "$dir/m-dead.out"; fi

n=$(grep -c '^step ' "$dir/out.txt")
A migrate "$jobpid" --to 127.0.0.1:$pb > "$dir/m1.out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "^migrated $jobpid to 127.0.0.1:$pb: frozen" "$dir/m1.out"; then
  ok "migrated A -> B: $(tail -1 "$dir/m1.out")"
else bad "migrate A -> B (exit $rc)" "$dir/m1.out" "$dir/a.log" "$dir/b.log"; fi
wait_line "$dir/out.txt" "^step $((n + 8)) " || bad "the job goes on after A -> B" "$dir/out.txt" "$dir/b.log"
A list > "$dir/list.out" 2>&1
grep -q "^$jobpid .*127.0.0.1:$pb" "$dir/list.out" && ok "migctl list shows the job on B" || bad "list" "$dir/list.out"

# A shim connection to B's call relay with the job's id but a wrong token: the
# relay must hang up without running anything (here: an unlinkat of a victim file).
jobid=$(sed -n 's/.*job \([0-9]*\) runs here as PID.*/\1/p' "$dir/b.log" | tail -1)
touch "$dir/victim"
python3 - "$dir/b/relay.sock" "${jobid:-0}" "$dir/victim" > "$dir/badtoken.out" 2>&1 <<'PY'
import socket, struct, sys
path, job, victim = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode() + b"\0"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(path)
s.sendall(struct.pack("<IIQ32sQIi", 0x48435352, 64, job, b"\x01" * 32, 0, 0, -1))  # Hello, wrong token
payload = struct.pack("<Q", len(victim)) + victim + b"\0" * (-len(victim) % 8)
# unlinkat(AT_FDCWD, victim, 0): forward table row 12
header = struct.pack("<IIQII6qQII", 0x51435352, 88 + len(payload), 1, 12, 0, -100, 0, 0, 0, 0, 0, 0, 1, 0)
try:
    s.sendall(header + payload)
    print("reply bytes:", len(s.recv(4096)))
except OSError as e:
    print("connection closed:", e)
PY
if [ -n "$jobid" ] && [ -e "$dir/victim" ] && grep -qE "reply bytes: 0|connection closed" "$dir/badtoken.out" &&
   grep -q "wrong token" "$dir/b.log"; then
  ok "a call with the job's id and a wrong token is refused and runs nothing"
else bad "wrong token (job id '$jobid')" "$dir/badtoken.out" "$dir/b.log"; fi

n=$(grep -c '^step ' "$dir/out.txt")
A migrate "$jobpid" --to 127.0.0.1:$pa > "$dir/m2.out" 2>&1; rc=$?
if [ $rc -eq 0 ]; then ok "migrated B -> A (home again)"; else bad "migrate B -> A (exit $rc)" "$dir/m2.out" "$dir/a.log" "$dir/b.log"; fi
wait_line "$dir/out.txt" "^step $((n + 5)) " || bad "the job goes on after B -> A" "$dir/out.txt"

kill -TERM "$jobpid"
wait_until 20 test -s "$dir/status"
status=$(cat "$dir/status" 2>/dev/null)
if [ "$status" = 42 ] && grep -q '^got SIGTERM$' "$dir/out.txt"; then
  ok "kill -TERM at home reached the job's handler; the parent got its status 42"
else bad "SIGTERM / exit status (status '$status')" "$dir/out.txt" "$dir/a.log" "$dir/b.log"; fi

# Every line once, in order, PID unchanged; the raw file likewise.
last=$(grep -c '^step ' "$dir/out.txt")
if diff <(for i in $(seq 1 "$last"); do echo "step $i pid $jobpid"; done) <(grep '^step ' "$dir/out.txt") > "$dir/out.diff" &&
   diff <(for i in $(seq 1 "$last"); do echo "raw $i"; done) "$dir/raw.txt" > "$dir/raw.diff"; then
  ok "$last lines through stdio and raw write(2), each once, in order, PID $jobpid throughout"
else bad "output exact" "$dir/out.diff" "$dir/raw.diff"; fi

# --- the other cases, each a function run by the loop at the end, all at once ---
case_stdin() {
# A job whose second thread is blocked reading its stdin (a pipe at home) while its
# main thread keeps printing: the deputy must run both threads' calls at once.
mkfifo "$dir/in.fifo"
# (Steps enough to outlast two hops on a loaded machine; ended by PID at the case's end.)
( LD_PRELOAD=$libmig "$job" 600 "$dir/raw2.txt" echo-stdin < "$dir/in.fifo" > "$dir/out2.txt" 2>&1 ) &
pids+=($!)
exec 7> "$dir/in.fifo"   # the writer end stays open: the reader blocks
wait_line "$dir/out2.txt" '^step 3 ' || bad "the stdin job started" "$dir/out2.txt"
job2=$(awk '/^step 1 /{print $4; exit}' "$dir/out2.txt")
A migrate "$job2" --to 127.0.0.1:$pb > "$dir/m3.out" 2>&1 || bad "migrate the stdin job" "$dir/m3.out" "$dir/b.log"
n=$(grep -c '^step ' "$dir/out2.txt")
if wait_line "$dir/out2.txt" "^step $((n + 5)) "; then
  ok "after migrating, a thread blocked reading stdin at home does not hold up the job's other calls"
else bad "steps while a read is blocked" "$dir/out2.txt"; fi
# Its reader thread is still blocked in that read at home: migrating again must not
# wait for it, and the read, sent again from the next host, must neither lose the
# line nor read twice.
A migrate "$job2" --to 127.0.0.1:$pa > "$dir/m3b.out" 2>&1 || bad "migrate the stdin job home while its read waits" "$dir/m3b.out" "$dir/b.log"
n=$(grep -c '^step ' "$dir/out2.txt")
wait_line "$dir/out2.txt" "^step $((n + 3)) " || bad "steps after the second hop" "$dir/out2.txt"
echo "hello from home" >&7
echo "second line" >&7
if wait_line "$dir/out2.txt" '^got second line$' && [ "$(grep -c '^got ' "$dir/out2.txt")" = 2 ] &&
   grep -q '^got hello from home$' "$dir/out2.txt" && grep -q frozen "$dir/m3b.out"; then
  ok "a read blocked at home did not hold off the next hop; the lines written to stdin after it arrived once each"
else bad "stdin lines after two hops" "$dir/out2.txt" "$dir/m3b.out"; fi
exec 7>&-
kill "$job2" 2>/dev/null
}

case_sigpipe() {
# `job | head -n 40` at home, the job migrated before head is done: once head has
# gone, the job's next write fails at home, and the job (on B) dies of SIGPIPE as it
# would have at home; the pipeline at home sees it.
( LD_PRELOAD=$libmig "$job" 200 "$dir/raw3.txt" | head -n 40 > "$dir/head.out"; echo "${PIPESTATUS[0]}" > "$dir/pipestatus" ) &
pids+=($!)
wait_line "$dir/raw3.txt" '^raw 2$' || bad "the piped job started" "$dir/raw3.txt"
job3=$(pgrep -f "migrating_job 200 $dir/raw3.txt" | head -1)
A migrate "$job3" --to 127.0.0.1:$pb > "$dir/m4.out" 2>&1 || bad "migrate the piped job" "$dir/m4.out" "$dir/b.log"
wait_until 20 test -s "$dir/pipestatus"
if [ "$(cat "$dir/pipestatus" 2>/dev/null)" = 141 ] &&
   diff <(for i in $(seq 1 40); do echo "step $i pid $job3"; done) "$dir/head.out" > "$dir/head.diff"; then
  ok "a job writing into a pipe whose reader at home ended dies of SIGPIPE (status 141), as without mig"
else bad "SIGPIPE through the deputy (status '$(cat "$dir/pipestatus" 2>/dev/null)')" "$dir/head.diff" "$dir/b.log"; fi
}

case_ordered() {
# Four threads taking turns writing 1 KiB lines to a pipe at home whose reader does
# not read until told (`job | (wait for ordered.go; cat)`), migrated A -> B and back
# mid-run, then a burst of stdio output and an immediate exit. On B the writes are
# pipelined and wait for the full pipe at home; the hop back must not leave them
# behind (nor let the job, home again, write past them). The lines must come round by
# round, thread by thread, and the burst must be complete (the deputy exits once
# every write has run). Its progress lines go to stderr, a file at home, with
# write-behind: they land while the pipe's writes wait (the relay's lane for file
# writes, docs/design.md "Writes to home files go behind"), so round 40's is waited
# for before the reader is let go.
# The burst waits for ordered.hold, made once the hop home is done: the job cannot end
# during that hop (its rounds alone may be over before it on a loaded machine).
( LD_PRELOAD=$libmig "$writers" 150 20000 "$dir/ordered.hold" 2> "$dir/ordered.err" |
    (for _ in $(seq 1 600); do [ -e "$dir/ordered.go" ] && break; sleep 0.05; done; cat > "$dir/ordered.out")
  echo "${PIPESTATUS[0]}" > "$dir/ordered.status" ) &
pids+=($!)
wait_line "$dir/ordered.err" '^at round 0$' || bad "the ordered writers started" "$dir/ordered.err"
job4=$(pgrep -f "ordered_writers 150 20000 $dir/ordered.hold" | head -1)
A migrate "$job4" --to 127.0.0.1:$pb > "$dir/m5.out" 2>&1 || bad "migrate the ordered writers" "$dir/m5.out" "$dir/b.log"
if wait_line "$dir/ordered.err" '^at round 40$' && [ ! -s "$dir/ordered.out" ]; then
  ok "the ordered writers' progress (a file at home) lands on B while their pipe at home is full and unread"
else
  bad "the ordered writers' progress, a file at home, behind their full pipe's writes" "$dir/ordered.err" "$dir/b.log"
fi
touch "$dir/ordered.go"
A migrate "$job4" --to 127.0.0.1:$pa > "$dir/m6.out" 2>&1 || bad "migrate the ordered writers home" "$dir/m6.out" "$dir/b.log"
touch "$dir/ordered.hold"
wait_until 20 test -s "$dir/ordered.status"
{ for r in $(seq 0 149); do for t in 0 1 2 3; do
    printf 'round %d thread %d ' "$r" "$t"; printf '%*s\n' $((1023 - ${#r} - 16)) '' | tr ' ' '.'; done; done
  for i in $(seq 0 19999); do echo "burst $i"; done; } > "$dir/ordered.expected"
if [ "$(cat "$dir/ordered.status" 2>/dev/null)" = 0 ] && grep -q "frozen" "$dir/m5.out" && grep -q "frozen" "$dir/m6.out" &&
   cmp -s "$dir/ordered.expected" "$dir/ordered.out"; then
  ok "pipelined writes of 4 threads to a full pipe at home, A -> B -> A: $(wc -l < "$dir/ordered.out") lines in order, the burst before exit complete ($(grep -o "frozen [0-9.]* ms" "$dir/m6.out") back home)"
else
  diff <(cut -c1-24 "$dir/ordered.expected") <(cut -c1-24 "$dir/ordered.out") | head -20 > "$dir/ordered.diff"
  bad "ordered pipelined writes (status '$(cat "$dir/ordered.status" 2>/dev/null)')" "$dir/ordered.diff" "$dir/m5.out" "$dir/m6.out" "$dir/b.log"
fi
}

case_family() {
# A job that forked a child at home, migrated: it kills and reaps that child (at home,
# through its deputy, and hears its SIGCHLD), then forks and spawns children on B,
# which get virtual PIDs from home's PID space above pid_max and whose output goes
# home like the job's; then it execs a shell, which goes on as the job.
( LD_PRELOAD=$libmig "$family" "$dir/family.go" > "$dir/family.out" 2>&1; echo "$?" > "$dir/family.status" ) &
pids+=($!)
wait_line "$dir/family.out" '^pid ' || bad "the family job started" "$dir/family.out"
read -r _ fpid _ _ hchild < "$dir/family.out"
# --only: the job moves without the child it forked at home (that is what is tested).
A migrate "$fpid" --to 127.0.0.1:$pb --only > "$dir/m7.out" 2>&1 || bad "migrate the family job" "$dir/m7.out" "$dir/b.log"
touch "$dir/family.go"
wait_until 20 test -s "$dir/family.status"
v=$(sed -n 's/^forked \([0-9]*\):.*/\1/p' "$dir/family.out")
if [ "$(cat "$dir/family.status" 2>/dev/null)" = 0 ] && grep -q "frozen" "$dir/m7.out" &&
   grep -qx "kill home child: 0" "$dir/family.out" &&
   grep -qx "home child $hchild reaped: signal 15" "$dir/family.out" &&
   grep -qx "SIGCHLD from the home child: yes" "$dir/family.out" &&
   [ -n "$v" ] && [ "$v" -gt 4194304 ] &&
   grep -qx "forked $v: it says getpid $v getppid $fpid" "$dir/family.out" &&
   grep -qx "child $v reaped: exit 5" "$dir/family.out" &&
   grep -qx "spawned [0-9]*, above pid_max: yes" "$dir/family.out" &&
   grep -qx "spawned [0-9]* reaped: exit 0" "$dir/family.out" &&
   grep -qx "no more children: yes" "$dir/family.out" && ! kill -0 "$hchild" 2>/dev/null &&
   grep -qx "child born away says hello" "$dir/family.out" &&
   grep -qx "spawned echo says hello" "$dir/family.out" &&
   grep -qx "exec'd shell, pid $fpid" "$dir/family.out"; then
  ok "away from home, the job killed and reaped its home child $hchild (SIGCHLD seen); its child born on B is PID $v for fork, getpid, getppid and waitpid; the child, a spawned echo and the shell the job exec'd wrote to its stdout at home"
else bad "process family away from home (status '$(cat "$dir/family.status" 2>/dev/null)')" "$dir/family.out" "$dir/m7.out" "$dir/b.log"; fi
}

case_stream() {
# A TCP client streaming 200 MiB to a sink at home with send(2), migrated A -> B -> A
# mid-stream: its socket stays at home with the deputy, so the sink sees one
# connection, never reset, and the same bytes as from an undisturbed run.
sink() {  # sink OUT: a one-connection TCP sink on loopback (lib/sink.py); "listening PORT" goes to OUT first
  python3 "$LOOPBACK_LIB_DIR/sink.py" 127.0.0.1 0 > "$1" &
  pids+=($!)
  wait_line "$1" '^listening '
}
sink_port() { awk '$1 == "listening" { print $2; exit }' "$1"; }
sink "$dir/sink1.port"
"$streamer" "$(sink_port "$dir/sink1.port")" 200 > "$dir/stream1.out" 2> /dev/null
sink "$dir/sink2.port"
( LD_PRELOAD=$libmig "$streamer" "$(sink_port "$dir/sink2.port")" 200 > "$dir/stream2.out" 2> "$dir/stream2.err"
  echo "$?" > "$dir/stream2.status" ) &
pids+=($!)
wait_line "$dir/stream2.err" '^at MiB 20$' || bad "the streaming client started" "$dir/stream2.err"
job5=$(pgrep -f "stream_client $(sink_port "$dir/sink2.port") 200" | head -1)
A migrate "$job5" --to 127.0.0.1:$pb > "$dir/m8.out" 2>&1 || bad "migrate the streaming client" "$dir/m8.out" "$dir/b.log"
n=$(grep -c '^at MiB' "$dir/stream2.err")
wait_line "$dir/stream2.err" "^at MiB $(( (n + 3) * 10 ))\$" || bad "the client streams on from B" "$dir/stream2.err"
A migrate "$job5" --to 127.0.0.1:$pa > "$dir/m9.out" 2>&1 || bad "migrate the streaming client home" "$dir/m9.out" "$dir/b.log"
wait_until 30 test -s "$dir/stream2.status"
if [ "$(cat "$dir/stream2.status" 2>/dev/null)" = 0 ] && grep -q frozen "$dir/m8.out" && grep -q frozen "$dir/m9.out" &&
   grep -q "sent 209715200 bytes; the sink says: 209715200 bytes sha256 " "$dir/stream1.out" &&
   cmp -s "$dir/stream1.out" "$dir/stream2.out"; then
  ok "a TCP client streamed 200 MiB through its socket at home, migrated A -> B -> A mid-stream: the sink's SHA-256 is the undisturbed run's"
else bad "TCP stream across migrations (status '$(cat "$dir/stream2.status" 2>/dev/null)')" "$dir/stream1.out" "$dir/stream2.out" "$dir/stream2.err" "$dir/m8.out" "$dir/m9.out"; fi
}

case_pipeline() {
# `producer | cat | sha256sum` in one shell at home, with coreutils' cat (a program
# nobody here wrote) under libmig, migrated to B and back mid-stream: the consumer's
# output is the undisturbed pipeline's, and every member of the pipeline exits 0.
# The producer (lib/producer.py, about 3 s) says how far it is on stderr: the hops are
# chosen by its "at line N" lines, each a few flushes after the last.
producer=$LOOPBACK_LIB_DIR/producer.py
python3 "$producer" 2> /dev/null | cat | sha256sum > "$dir/pipe1.out"
( python3 "$producer" 2> "$dir/pipe2.progress" | LD_PRELOAD=$libmig cat - | sha256sum > "$dir/pipe2.out"
  echo "${PIPESTATUS[*]}" > "$dir/pipe2.status" ) &
pids+=($!)
for _ in $(seq 1 100); do job6=$(pgrep -P "$!" -f -x 'cat -'); [ -n "$job6" ] && break; sleep 0.05; done
# producer_at N: the producer has flushed line N (or, if it ended before, its last).
producer_at() { wait_line "$dir/pipe2.progress" "^at line $(( $1 < 290000 ? $1 : 290000 ))\$"; }
producer_at 50000 || bad "the producer of the pipeline goes" "$dir/pipe2.progress"
A migrate "$job6" --to 127.0.0.1:$pb > "$dir/m10.out" 2>&1 || bad "migrate cat" "$dir/m10.out" "$dir/b.log"
n=$(grep -c '^at line' "$dir/pipe2.progress")
producer_at $(( (n + 4) * 10000 )) || bad "the producer goes on with cat on B" "$dir/pipe2.progress"
A migrate "$job6" --to 127.0.0.1:$pa > "$dir/m11.out" 2>&1 || bad "migrate cat home" "$dir/m11.out" "$dir/b.log"
wait_until 30 test -s "$dir/pipe2.status"
if [ "$(cat "$dir/pipe2.status" 2>/dev/null)" = "0 0 0" ] && grep -q frozen "$dir/m10.out" && grep -q frozen "$dir/m11.out" &&
   cmp -s "$dir/pipe1.out" "$dir/pipe2.out"; then
  ok "producer | cat | sha256sum with cat migrated A -> B -> A mid-stream: the consumer's output is exact, the pipeline exits 0 0 0"
else bad "pipeline through a migrated cat (status '$(cat "$dir/pipe2.status" 2>/dev/null)')" "$dir/pipe1.out" "$dir/pipe2.out" "$dir/m10.out" "$dir/m11.out"; fi
}

case_echo_server() {
# A blocking TCP echo server listening at home, migrated A -> B while a client talks
# to it (the client gets every echo, in order, and no reset), then a new client
# connects to the same address and is served from B; then, while the server waits
# in accept at home, back to A, and a third client is served. accept's peer address
# and getsockname say the same on B as at home.
client() {  # client PORT N [PROGRESS]: N numbered lines, 20 ms apart, each echo checked (lib/echo_client.py)
  python3 "$LOOPBACK_LIB_DIR/echo_client.py" 127.0.0.1 "$1" "$2" message ${3:+"$3"}
}
( LD_PRELOAD=$libmig "$server" 3 > "$dir/server.out" 2>&1; echo "$?" > "$dir/server.status" ) &
pids+=($!)
wait_line "$dir/server.out" '^port ' || bad "the echo server started" "$dir/server.out"
sport=$(sed -n 's/^port //p' "$dir/server.out")
spid=$(pgrep -P "${pids[-1]}" -x echo_server)
client "$sport" 150 "$dir/client1.progress" > "$dir/client1.out" 2>&1 &
c1=$!; pids+=($c1)
# mid-conversation: 50 of its 150 echoes (about 1 s) back
wait_line "$dir/client1.progress" '^at echo 50$' || bad "the first client talks to the echo server" "$dir/client1.out" "$dir/server.out"
A migrate "$spid" --to 127.0.0.1:$pb > "$dir/m12.out" 2>&1 || bad "migrate the echo server" "$dir/m12.out" "$dir/b.log"
wait "$c1"
client "$sport" 20 > "$dir/client2.out" 2>&1
wait_line "$dir/server.out" '^served client 2$'
A migrate "$spid" --to 127.0.0.1:$pa > "$dir/m13.out" 2>&1 || bad "migrate the echo server home" "$dir/m13.out" "$dir/b.log"
client "$sport" 20 > "$dir/client3.out" 2>&1
wait_until 10 test -s "$dir/server.status"
if [ "$(cat "$dir/server.status" 2>/dev/null)" = 0 ] && grep -q frozen "$dir/m12.out" && grep -q frozen "$dir/m13.out" &&
   grep -qx "150 echoes in order" "$dir/client1.out" && grep -qx "20 echoes in order" "$dir/client2.out" &&
   grep -qx "20 echoes in order" "$dir/client3.out" && grep -qx "served client 3" "$dir/server.out" &&
   [ "$(grep -c "^client [123] from 127.0.0.1, to port $sport\$" "$dir/server.out")" = 3 ]; then
  ok "a TCP echo server, migrated A -> B mid-conversation and back while waiting in accept: every echo in order, new clients served at the same address"
else bad "TCP server across migrations (status '$(cat "$dir/server.status" 2>/dev/null)')" "$dir/server.out" "$dir/client1.out" "$dir/client2.out" "$dir/client3.out" "$dir/m12.out" "$dir/m13.out"; fi
}

# Event-loop servers: three clients keep sending lines at a steady rate, not waiting
# for the echoes, while the server goes A -> B -> A; a new client is served at B.
#   event_loop_check NAME PROCESS_NAME PROGRAM ARGS...  (the program prints "port N",
#   "client K ..." per client, and exits 0 after 4 clients)
event_loop_check() {
  local name=$1 comm=$2 k; shift 2
  ( LD_PRELOAD=$libmig "$@" > "$dir/$name.out" 2>&1; echo "$?" > "$dir/$name.status" ) &
  pids+=($!)
  wait_line "$dir/$name.out" '^port ' || bad "$name started" "$dir/$name.out"
  local eport evpid steadies=()
  eport=$(sed -n 's/^port //p' "$dir/$name.out")
  evpid=$(pgrep -P "${pids[-1]}" -x "$comm")
  for k in 1 2 3; do python3 "$steady" 127.0.0.1 "$eport" 600 10 "c$k" > "$dir/$name$k.out" 2>&1 & steadies+=($!); pids+=($!); done
  wait_line "$dir/$name.out" '^client 3'
  A migrate "$evpid" --to 127.0.0.1:$pb > "$dir/$name-m1.out" 2>&1 || bad "migrate $name" "$dir/$name-m1.out" "$dir/b.log"
  python3 "$steady" 127.0.0.1 "$eport" 20 10 new > "$dir/${name}4.out" 2>&1
  A migrate "$evpid" --to 127.0.0.1:$pa > "$dir/$name-m2.out" 2>&1 || bad "migrate $name home" "$dir/$name-m2.out" "$dir/b.log"
  wait "${steadies[@]}"
  wait_until 10 test -s "$dir/$name.status"
  if [ "$(cat "$dir/$name.status" 2>/dev/null)" = 0 ] && grep -q frozen "$dir/$name-m1.out" && grep -q frozen "$dir/$name-m2.out" &&
     [ "$(cat "$dir/${name}1.out" "$dir/${name}2.out" "$dir/${name}3.out")" = "$(printf '600 echoes in order\n%.0s' 1 2 3)" ] &&
     grep -qx "20 echoes in order" "$dir/${name}4.out"; then
    return 0
  fi
  bad "$name across migrations (status '$(cat "$dir/$name.status" 2>/dev/null)')" "$dir/$name.out" "$dir/${name}1.out" "$dir/${name}2.out" \
    "$dir/${name}3.out" "$dir/${name}4.out" "$dir/$name-m1.out" "$dir/$name-m2.out"
  return 1
}
case_epoll() {
event_loop_check etserver epoll_echo_serv "$evserver" --et 4 &&
  ok "an edge-triggered epoll server, migrated A -> B -> A while three clients stream lines at it: every echo in order, a new client served on B"
}
case_libuv() {
event_loop_check uvserver uv_echo_server "$uvserver" 4 &&
  ok "a libuv TCP server (FIONBIO, TCP_NODELAY, epoll), migrated A -> B -> A while three clients stream lines at it: every echo in order, a new client served on B"
}

case_udp() {
# A UDP echo job bound at home, migrated A -> B -> A between bursts of datagrams of
# many sizes: each comes back whole, from the job's port, to the client's.
udp_client() {  # udp_client PORT N: N datagrams, each echoed exactly by PORT
  python3 -c '
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(20)
for i in range(n):
    msg = ("datagram %d " % i).encode() + b"x" * (i * 37 % 1400)
    s.sendto(msg, ("127.0.0.1", port))
    d, a = s.recvfrom(65536)
    if d != msg or a != ("127.0.0.1", port): print("bad echo for", i, a); sys.exit(1)
print("%d datagrams echoed whole" % n)' "$@"
}
( LD_PRELOAD=$libmig "$udpecho" > "$dir/udp.out" 2>&1; echo "$?" > "$dir/udp.status" ) &
pids+=($!)
wait_line "$dir/udp.out" '^port ' || bad "the UDP echo job started" "$dir/udp.out"
uport=$(sed -n 's/^port //p' "$dir/udp.out")
upid=$(pgrep -P "${pids[-1]}" -x udp_echo)
udp_client "$uport" 50 > "$dir/udp1.out" 2>&1
A migrate "$upid" --to 127.0.0.1:$pb > "$dir/m14.out" 2>&1 || bad "migrate the UDP job" "$dir/m14.out" "$dir/b.log"
udp_client "$uport" 50 > "$dir/udp2.out" 2>&1
A migrate "$upid" --to 127.0.0.1:$pa > "$dir/m15.out" 2>&1 || bad "migrate the UDP job home" "$dir/m15.out" "$dir/b.log"
udp_client "$uport" 50 > "$dir/udp3.out" 2>&1
python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"quit", ("127.0.0.1", int(sys.argv[1])))' "$uport"
wait_until 10 test -s "$dir/udp.status"
if [ "$(cat "$dir/udp.status" 2>/dev/null)" = 0 ] && grep -q frozen "$dir/m14.out" && grep -q frozen "$dir/m15.out" &&
   [ "$(cat "$dir/udp1.out" "$dir/udp2.out" "$dir/udp3.out" | grep -cx "50 datagrams echoed whole")" = 3 ] &&
   grep -qx "echoed 150 datagrams" "$dir/udp.out"; then
  ok "a UDP echo job bound at home, migrated A -> B -> A between bursts: 150 datagrams echoed whole, from its port, to their senders"
else bad "UDP across migrations (status '$(cat "$dir/udp.status" 2>/dev/null)')" "$dir/udp.out" "$dir/udp1.out" "$dir/udp2.out" "$dir/udp3.out" "$dir/m14.out"; fi
}

# The cases above are independent of each other (each has its own job, clients and
# files in $dir; they share the shadowds A and B, as the jobs of a cluster do): they
# run in three lanes at once, the cases of a lane one after the other, each lane in a
# process group of its own (killed whole on exit). Each case's report goes to
# $dir/case-NAME.log, shown in the order of the cases once all lanes have ended.
# Lanes, not every case at once: a few cases must make their hops within a stretch
# of a job's steady pace (streaming clients of 6 s, 40 lines of 100 ms before head
# ends), which a machine loaded with every case at once stretches. (The first job's checks ran
# alone before them: its job id is the last one in B's log.)
lanes=("stdin sigpipe ordered family udp" "stream pipeline" "echo_server epoll libuv")
lane_pgids=()
trap 'for g in "${lane_pgids[@]}"; do kill -9 -- "-$g" 2>/dev/null; done; cleanup' EXIT
set -m
for lane in "${lanes[@]}"; do
  ( for c in $lane; do "case_$c" > "$dir/case-$c.log" 2>&1; done ) &
  lane_pgids+=($!)
done
set +m
wait "${lane_pgids[@]}"
for c in stdin sigpipe ordered family stream pipeline echo_server epoll libuv udp; do
  cat "$dir/case-$c.log"
  failures=$((failures + $(grep -c '^FAIL - ' "$dir/case-$c.log")))
done
[ "$failures" -eq 0 ]
