#!/bin/bash
# redis.sh: redis-server (Debian's, under libmig) on a, migrated a -> b while a
# client on d runs SET/GET at a steady rate (from its 150th pair on): every command
# gets its reply, DBSIZE and a checksum of 1000 known keys are intact, a client that
# connects during the migration (200 MB in it: a long freeze; it connects once the
# image is on its way to b) is answered, a new redis-cli is served; it shuts down
# with status 0. Skips (77) without redis-server and redis-cli.
#
# usage: redis.sh OPTIONS (below); meson runs it as test 'migration-redis'
# (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "SKIP: redis-server or redis-cli not installed (apt-get install redis-server)"
  exit 77
fi
cluster_up a b d

# redis-server, a real event-loop server nobody here wrote, with a client talking to
# it while it moves a -> b. RESP by hand: no Python package needed. The client
# writes "at pair K" every 50 pairs to its PROGRESS file.
REDIS_CLIENT='import socket, sys, time
addr, port, n, progress = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), open(sys.argv[4], "a")
s = socket.create_connection((addr, port), timeout=30); f = s.makefile("rb")
def cmd(*args):
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    line = f.readline()
    if line.startswith(b"$") and line != b"$-1\r\n":
        return f.read(int(line[1:]) + 2)[:-2]
    return line.rstrip(b"\r\n")
for i in range(n):
    k, v = b"steady:%d" % i, b"value %d" % i
    if cmd(b"SET", k, v) != b"+OK" or cmd(b"GET", k) != v: print("bad reply at", i); sys.exit(1)
    if (i + 1) % 50 == 0: progress.write("at pair %d\n" % (i + 1)); progress.flush()
    time.sleep(0.005)
print("%d SET/GET pairs answered" % n)'
# A client that connects once TRIGGER exists (made while the job is frozen): PING,
# and how long PONG took.
LATE_PING='import os, socket, sys, time
while not os.path.exists(sys.argv[3]): time.sleep(0.005)
t = time.monotonic(); s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
s.sendall(b"PING\r\n"); got = s.recv(100)
print("%s after %d ms" % (got.decode().strip(), (time.monotonic() - t) * 1000))'
redis_cli() { hx d redis-cli -h "${ADDR[a]}" -p 7300 "$@"; }
known_keys() { seq 1 1000 | sed 's/^/GET known:/' | redis_cli | sha256sum | cut -d' ' -f1; }
if start_job redis mig "$(command -v redis-server)" --port 7300 --bind "${ADDR[a]}" --protected-mode no --save '' --appendonly no \
     --daemonize no && wait_until 20 grep -q 'Ready to accept connections' "$(jfile redis out)"; then
  seq 1 1000 | awk '{ print "SET known:" $1 " value-" $1 "-" $1 * 7919 }' | redis_cli >/dev/null
  redis_cli SETRANGE ballast 199999999 x >/dev/null  # 200 MB: a freeze long enough to connect in
  sum1=$(known_keys) size1=$(redis_cli DBSIZE)
  hx d python3 -c "$REDIS_CLIENT" "${ADDR[a]}" 7300 600 "$T/redis-steady.progress" >"$T/redis-steady.out" 2>&1 & rc=$!; bg_pids+=($rc)
  # a quarter into its 600 pairs (about 4 s): 150 answered
  wait_until 20 grep -qx 'at pair 150' "$T/redis-steady.progress" ||
    fail "redis: the client on d did not get to 150 SET/GET pairs within 20 s: $(cat "$T/redis-steady.out")"
  hx d python3 -c "$LATE_PING" "${ADDR[a]}" 7300 "$T/redis-go" >"$T/redis-late.out" 2>&1 & lp=$!; bg_pids+=($lp)
  # The new client comes mid-migration: once the image is on its way to b (redis is frozen).
  migrate_in_background redis b
  touch "$T/redis-go"
  migrate_running && inflight=yes || inflight=no
  wait "$lp"
  wait "$mpid"; MIG_RC=$?
  (( MIG_RC == 0 )) && ok "redis: a -> b while a client on d runs SET/GET: $(migrated_line)" ||
    { fail "redis: a -> b: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
  if [[ $inflight == yes ]] && grep -q '^+PONG after ' "$T/redis-late.out"; then
    ok "redis: a client that connected to a's address during the migration waited in the backlog and was answered ($(cat "$T/redis-late.out"))"
  else
    fail "redis: a client connecting during the migration (migration still running: $inflight): $(cat "$T/redis-late.out")"
  fi
  kill -0 "$rc" 2>/dev/null && during=yes || during=no  # the client was still at it
  wait "$rc"
  sum2=$(known_keys) size2=$(redis_cli DBSIZE)
  redis_cli SHUTDOWN NOSAVE >/dev/null 2>&1
  wait_job redis 30
  if [[ $STATUS == 0 && $during == yes && $size1 == 1001 && $size2 == 1601 && $sum1 == "$sum2" ]] &&
     grep -qx "600 SET/GET pairs answered" "$T/redis-steady.out"; then
    ok "redis: the client on d got all 600 SET/GET replies across a -> b; DBSIZE 1001 + 600, the 1000 known keys' checksum unchanged; redis-cli served on b, SHUTDOWN gives status 0 on a"
  else
    fail "redis: status $STATUS, client still running after the hop: $during, DBSIZE $size1 -> $size2, checksum $sum1 -> $sum2; the client says: $(cat "$T/redis-steady.out")"
    detail "$(jfile redis out)" "redis-server's log"
    shadowd_logs a b
  fi
fi
kill_job redis

cluster_end
