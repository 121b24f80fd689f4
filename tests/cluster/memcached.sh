#!/bin/bash
# memcached.sh: memcached (Debian's, under libmig, default -c 1024, which makes it
# lower RLIMIT_NOFILE to 1024, soft and hard) on a, migrated a -> b while a client on
# d runs set/get on one connection (from its 100th pair on): every command gets its
# reply, 200 keys set before the move read back after it on a new connection, new
# keys set and read on b, a second move to b is refused (it already runs there),
# SIGTERM at home ends it. It runs with MIG_LOG (in /var/tmp, which every simulated
# host shares): the shim on a and b and the deputy on a log what they did there
# (checkpoint, restore, forwarded calls, the calls run at home, the signal), and nothing
# of it reaches memcached's stdout or stderr. A second memcached whose deputy cannot
# watch its sockets (MIG_FAULT=deputy-watch) is moved too: migctl migrate must say it
# cannot work there (exit 3), not report a success. mig's own fds (the shim's on b,
# the deputy's on a) must fit under that limit and out of memcached's numbers.
# Skips (77) without memcached.
#
# usage: memcached.sh OPTIONS (below); meson runs it as test 'migration-memcached'
# (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
if ! command -v memcached >/dev/null; then
  echo "SKIP: memcached not installed (apt-get install memcached)"
  exit 77
fi
cluster_up a b d

# The memcached text protocol by hand: no Python package needed.
#   mc.py ADDR PORT set PREFIX N        sets PREFIX:1..N on a new connection
#   mc.py ADDR PORT check PREFIX N      reads them back; prints "N keys intact"
#   mc.py ADDR PORT steady N PROGRESS   N set+get pairs on one connection, "at pair K"
#                                       every 50 to PROGRESS
MC_CLIENT='import socket, sys, time
addr, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((addr, port), timeout=30); f = s.makefile("rb")
def mset(k, v):
    s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
    return f.readline() == b"STORED\r\n"
def mget(k):
    s.sendall(b"get %s\r\n" % k); line = f.readline()
    if line == b"END\r\n": return None
    v = f.read(int(line.split()[3]) + 2)[:-2]
    return v if f.readline() == b"END\r\n" else None
val = lambda p, i: b"value-%s-%d-%d" % (p, i, i * 7919)
if what in ("set", "check"):
    p, n = sys.argv[4].encode(), int(sys.argv[5])
    for i in range(1, n + 1):
        k = b"%s:%d" % (p, i)
        if (what == "set" and not mset(k, val(p, i))) or (what == "check" and mget(k) != val(p, i)):
            print("%s: bad reply for %s" % (what, k.decode())); sys.exit(1)
    print("%d keys %s" % (n, "set" if what == "set" else "intact"))
else:
    n, progress = int(sys.argv[4]), open(sys.argv[5], "a")
    for i in range(1, n + 1):
        k = b"steady:%d" % i
        if not mset(k, val(b"steady", i)) or mget(k) != val(b"steady", i): print("bad reply at", i); sys.exit(1)
        if i % 50 == 0: progress.write("at pair %d\n" % i); progress.flush()
        time.sleep(0.005)
    print("%d set/get pairs answered" % n)'
mc() { hx d python3 -c "$MC_CLIENT" "${ADDR[a]}" 7400 "$@"; }
# root runs it (the hosts' jobs run as root): memcached then wants -u.
MIGLOG=/var/tmp/mig-memcached-test.$$.log
rm -f "$MIGLOG"
# env sets MIG_LOG and execs memcached (the same PID, the shim again after the exec).
if start_job memcached mig /usr/bin/env MIG_LOG="$MIGLOG" "$(command -v memcached)" -u root -l "${ADDR[a]}" -p 7400 -U 0 -c 1024 &&
   wait_until 20 eval 'mc set first 200 >"$T/mc-set.out" 2>&1'; then
  limit=$(hx a awk '/^Max open files/ { print $4 " " $5 }' "/proc/${PID[memcached]}/limits")
  [[ $limit == "1024 1024" ]] && ok "memcached: lowered its fd limit to 1024 (soft and hard) on a" ||
    fail "memcached: its fd limit on a is '$limit', not 1024 1024: the test no longer tests what it says"
  hx d python3 -c "$MC_CLIENT" "${ADDR[a]}" 7400 steady 400 "$T/mc-steady.progress" >"$T/mc-steady.out" 2>&1 & sc=$!
  bg_pids+=($sc)
  wait_until 20 grep -qx 'at pair 100' "$T/mc-steady.progress" ||
    fail "memcached: the client on d did not get to 100 set/get pairs within 20 s: $(cat "$T/mc-steady.out")"
  migrate memcached b 60
  (( MIG_RC == 0 )) && ok "memcached: a -> b while a client on d runs set/get: $(migrated_line)" ||
    { fail "memcached: a -> b: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; restore_log b; }
  kill -0 "$sc" 2>/dev/null && during=yes || during=no
  wait "$sc"
  if [[ $during == yes ]] && grep -qx "400 set/get pairs answered" "$T/mc-steady.out"; then
    ok "memcached: the client on d got all 400 set/get replies on one connection across a -> b"
  else
    fail "memcached: the steady client (still running at the hop: $during) says: $(cat "$T/mc-steady.out")"
  fi
  migrate memcached b
  if (( MIG_RC != 0 )) && [[ $(wc -l <"$MIG_ERR") == 1 ]] && grep -q "already runs on b" "$MIG_ERR"; then
    ok "memcached: a second move to b is refused: $(cat "$MIG_ERR")"
  else
    fail "memcached: migrate to b where it runs: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
  fi
  got=$(mc check first 200 2>&1)
  [[ $got == "200 keys intact" ]] && ok "memcached: on b, a new connection reads the 200 keys set on a" ||
    fail "memcached: reading the keys set on a after the move: $got"
  got=$( (mc set second 300 && mc check second 300) 2>&1 | tr '\n' ' ')
  [[ $got == "300 keys set 300 keys intact " ]] && ok "memcached: on b, 300 new keys set and read back" ||
    fail "memcached: new keys on b: $got"
  hx a kill -TERM "${PID[memcached]}"
  wait_job memcached 30 && ok "memcached: SIGTERM at home ended it (status $STATUS)" ||
    fail "memcached: still running 30 s after SIGTERM at home"
  # MIG_LOG: each part says what it did, on the host it did it, in the one file.
  missing=""
  for want in "mig shim ${PID[memcached]} (here ${PID[memcached]}): checkpoint: freezing" \
              "mig shim ${PID[memcached]} (here [0-9]*): restored on this host as PID" \
              "mig shim ${PID[memcached]} (here [0-9]*): forwarded home: accept4(" \
              "mig deputy ${PID[memcached]}: job [0-9]*: registered as its deputy" \
              "mig deputy ${PID[memcached]}: ran accept4(" \
              "mig deputy ${PID[memcached]}: signal 15 (si_code 0, from PID" \
              "mig deputy ${PID[memcached]}: the job ended"; do
    grep -q "^$want" "$MIGLOG" 2>/dev/null || missing+=" '$want'"
  done
  if [[ -z $missing ]] && ! grep -qa "^mig " "$(jfile memcached out)" "$(jfile memcached err)"; then
    ok "memcached: MIG_LOG has the shim's lines from a and b and the deputy's, $(wc -l <"$MIGLOG") lines; none in memcached's output"
  else
    fail "memcached: MIG_LOG lacks:${missing:- nothing}; mig lines in memcached's output: $(grep -ac "^mig " "$(jfile memcached out)" "$(jfile memcached err)" | tr '\n' ' ')"
    detail "$MIGLOG" "MIG_LOG" 20
  fi
  (( failures == 0 )) || { detail "$(jfile memcached err)" "memcached's stderr"; shadowd_logs a b; }
else
  fail "memcached did not answer on ${ADDR[a]}:7400 within 20 s: $(cat "$T/mc-set.out" 2>/dev/null)"
  detail "$(jfile memcached err)" "memcached's stderr"
fi
kill_job memcached
rm -f "$MIGLOG"

# A move after which the job cannot serve is not reported as a success: with
# MIG_FAULT=deputy-watch the deputy cannot watch any home fd (as if its fd table were
# full), so memcached's listening socket never wakes its epoll on b. migctl migrate
# exits 3 with one line that says so, after its "migrated" line.
if start_job broken mig /usr/bin/env MIG_FAULT=deputy-watch "$(command -v memcached)" -u root -l "${ADDR[a]}" -p 7401 -U 0 &&
   wait_until 20 eval 'hx d python3 -c "$MC_CLIENT" "${ADDR[a]}" 7401 set early 10 >"$T/mc-broken.out" 2>&1'; then
  migrate broken b 60
  if (( MIG_RC == 3 )) && [[ -n $(migrated_line) && $(wc -l <"$MIG_ERR") == 1 ]] &&
     grep -q "moved to .* but cannot work there as it did: its home fd [0-9]* cannot be watched" "$MIG_ERR"; then
    ok "memcached: a move after which it cannot serve exits 3 with one line: $(cat "$MIG_ERR")"
  else
    fail "memcached: a move whose home fds cannot be watched: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_OUT" "$MIG_ERR")"
    shadowd_logs a b
  fi
else
  fail "memcached (MIG_FAULT=deputy-watch) did not answer on ${ADDR[a]}:7401 within 20 s: $(cat "$T/mc-broken.out" 2>/dev/null)"
fi
kill_job broken

cluster_end
