#!/bin/bash
# loopback_redis.sh: a real event-loop server, redis-server (epoll, non-blocking
# sockets, four helper threads, jemalloc), migrated between two shadowd on loopback
# while a client talks to it. Its listening socket and connections stay at home with
# the deputy, so this only passes once poll/epoll on home sockets report their
# readiness at home.
#
# redis-server runs under libmig on A with no persistence (--save '', no AOF); 1000
# known keys are loaded; a client connected all along sends SET/GET/INCR every 20 ms
# and checks each reply (INCR numbers every round: nothing lost, nothing run twice).
# Migrated A -> B, then B -> A. After each hop: the connected client goes on being
# served, and a new client is served: PING, DBSIZE 1000, the 1000 values exact (their
# SHA-256), a write read back. At the end: the connected client got a right reply to
# every command; SAVE writes an RDB at home (the main thread's stack must grow for
# lzf_compress's table) that a fresh redis-server loads with the same keys; kill -TERM
# at home shuts redis down wherever it runs, exit status 0.
#
# Every wait is bounded (a client waits at most 30 s for a reply): without readiness the
# clients time out and the test fails, it does not hang. Skips (77) without redis-server.
#
# usage: loopback_redis.sh SHADOWD MIGCTL LIBMIG
set -u
if ! command -v redis-server > /dev/null; then
  echo "SKIP: redis-server is not installed (apt-get install redis-server)"
  exit 77
fi
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3")
source "$(dirname "$0")/lib/loopback_lib.sh" redis
new_key "$dir/key"
pa=$(port) pb=$(port) rp=$(port) cp=$(port)

# The restored redis-server processes are children of the shadowd that restored them:
# end them too.
trap 'kill_restored "redis-server .*:$rp"; cleanup' EXIT

start_shadowd a $pa "$dir/key"
start_shadowd b $pb "$dir/key"
wait_shadowds a b

# A RESP client on a plain socket (no python packages). Every reply is awaited at most
# 30 s; a failure is one line starting FAIL, exit 1.
cat > "$dir/resp.py" <<'PY'
import hashlib, os, socket, sys, time
STALL = 30.0

def fail(msg):
    print("FAIL " + msg, flush=True)
    sys.exit(1)

def value(i):
    return ("v%d:" % i) * (1 + i % 40)

def expected_digest(n):
    h = hashlib.sha256()
    for i in range(n):
        h.update(("key:%d=%s\n" % (i, value(i))).encode())
    return h.hexdigest()

def encode(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

class Conn:
    def __init__(self, port):
        try:
            self.s = socket.create_connection(("127.0.0.1", port), timeout=STALL)
        except OSError as e:
            fail("cannot connect to port %d: %s" % (port, e))
        self.buf = b""
        self.sent = 0
        self.got = 0

    def send(self, data, count):
        try:
            self.s.sendall(data)
        except socket.timeout:
            fail("timeout: a send blocked %.0f s (%d replies so far)" % (STALL, self.got))
        except OSError as e:
            fail("%s while sending (%d replies so far)" % ("reset" if isinstance(e, ConnectionResetError) else e, self.got))
        self.sent += count

    def _fill(self):
        try:
            d = self.s.recv(1 << 16)
        except socket.timeout:
            fail("timeout: no reply for %.0f s (%d of %d replies came)" % (STALL, self.got, self.sent))
        except OSError as e:
            fail("%s while reading (%d of %d replies came)" % ("reset" if isinstance(e, ConnectionResetError) else e, self.got, self.sent))
        if not d:
            fail("closed: the server closed the connection (%d of %d replies came)" % (self.got, self.sent))
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return line.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        fail("not a RESP reply: %r" % line)

    def reply(self):
        r = self._reply()
        self.got += 1
        return r

    def call(self, *args):
        self.send(encode(*args), 1)
        return self.reply()

def expect(what, got, want):
    if got != want:
        fail("%s: want %r, got %r" % (what, want, got if not isinstance(got, str) or len(got) < 200 else got[:200] + "..."))

def main():
    port, op, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if op == "ping":  # wait (10 s) for the server to answer
        deadline = time.monotonic() + 10
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(encode("PING"))
                if s.recv(100) == b"+PONG\r\n":
                    print("PONG")
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                fail("no PONG from port %d in 10 s" % port)
            time.sleep(0.1)
    if op == "load":  # load N known keys in db 0
        n = int(args[0])
        c = Conn(port)
        c.send(b"".join(encode("SET", "key:%d" % i, value(i)) for i in range(n)), n)
        for i in range(n):
            expect("SET key:%d" % i, c.reply(), "+OK")
        print("loaded %d keys, sha256 %s" % (n, expected_digest(n)))
        return
    if op == "check":  # a new client: PING, DBSIZE, every known value, a write read back
        n, tag = int(args[0]), args[1]
        c = Conn(port)
        expect("PING", c.call("PING"), "+PONG")
        expect("DBSIZE", c.call("DBSIZE"), n)
        c.send(b"".join(encode("GET", "key:%d" % i) for i in range(n)), n)
        h = hashlib.sha256()
        for i in range(n):
            v = c.reply()
            if v is None:
                fail("key:%d is missing" % i)
            h.update(("key:%d=%s\n" % (i, v)).encode())
        digest = h.hexdigest()
        expect("SHA-256 of the %d values" % n, digest, expected_digest(n))
        expect("SELECT 2", c.call("SELECT", 2), "+OK")
        expect("SET " + tag, c.call("SET", tag, "written " + tag), "+OK")
        expect("GET " + tag, c.call("GET", tag), "written " + tag)
        print("PONG, DBSIZE %d, values sha256 %s, write read back" % (n, digest))
        return
    if op == "steady":  # one connection, a round of SET/GET/INCR every 20 ms until STOP exists
        progress, stop = args[0], args[1]
        c = Conn(port)
        expect("SELECT 1", c.call("SELECT", 1), "+OK")
        c.call("DEL", "counter")
        start = time.monotonic()
        longest = 0.0
        rounds = 0
        with open(progress, "a") as p:
            while not os.path.exists(stop):
                if time.monotonic() - start > 280:
                    fail("never told to stop")
                due = start + rounds * 0.02
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                rounds += 1
                k, v = "s:%d" % (rounds % 100), "round %d" % rounds
                t0 = time.monotonic()
                c.send(encode("SET", k, v) + encode("GET", k) + encode("INCR", "counter"), 3)
                expect("round %d: SET" % rounds, c.reply(), "+OK")
                expect("round %d: GET" % rounds, c.reply(), v)
                expect("round %d: INCR" % rounds, c.reply(), rounds)
                longest = max(longest, time.monotonic() - t0)
                if rounds % 25 == 0:
                    p.write("round %d\n" % rounds)
                    p.flush()
        print("%d rounds, %d commands, every reply right (longest wait for a round's replies %.0f ms)"
              % (rounds, c.got, longest * 1000), flush=True)
        return
    if op == "call":  # one command, its reply printed
        print(Conn(port).call(*args))
        return
    fail("unknown op " + op)

main()
PY
resp() { timeout 200 python3 "$dir/resp.py" "$@"; }
rounds() { sed -n 's/^round //p' "$dir/steady.progress" 2>/dev/null | tail -1; }
# steady_goes_on: bounded wait (30 s) for the connected client to do 25 more rounds
steady_goes_on() {
  local from; from=$(rounds)
  for _ in $(seq 1 300); do
    [ "$(rounds)" -ge $(( ${from:-0} + 25 )) ] 2>/dev/null && return 0
    [ -s "$dir/steady.out" ] && return 1  # it ended (failed)
    sleep 0.1
  done
  return 1
}

mkdir -p "$dir/data"
cd "$dir/data"
LD_PRELOAD=$libmig redis-server --port "$rp" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$dir/data" --dbfilename dump.rdb > "$dir/redis.log" 2>&1 &
rpid=$!
pids+=($rpid)
if resp "$rp" ping > "$dir/ping.out" 2>&1; then
  ok "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') runs under libmig on A (PID $rpid, port $rp)"
else
  bad "redis-server started" "$dir/ping.out" "$dir/redis.log"
  exit 1
fi
resp "$rp" load 1000 > "$dir/load.out" 2>&1 && resp "$rp" check 1000 before > "$dir/check0.out" 2>&1 &&
  ok "1000 keys loaded; a new client sees $(cat "$dir/check0.out")" ||
  bad "loading the keys" "$dir/load.out" "$dir/check0.out"

# (python3 itself in the background, not under timeout: its PID is the one cleanup kills)
python3 "$dir/resp.py" "$rp" steady "$dir/steady.progress" "$dir/steady.stop" > "$dir/steady.out" 2>&1 &
steady=$!
pids+=($steady)
steady_goes_on && ok "a connected client sends SET/GET/INCR every 20 ms and gets the right replies" ||
  bad "the connected client before migrating" "$dir/steady.out"

# hop FROM TO: migrate redis, then check the connected client and a new one.
hop() {
  local name="$1 -> $2" to=$3 tag=$4
  A migrate "$rpid" --to 127.0.0.1:$to > "$dir/m-$tag.out" 2>&1; local rc=$?
  if [ $rc -eq 0 ] && grep -q "^migrated $rpid to 127.0.0.1:$to: frozen" "$dir/m-$tag.out"; then
    ok "migrated redis $name: $(tail -1 "$dir/m-$tag.out" | sed 's/^migrated [0-9]* to [^ ]* //')"
  else
    bad "migrate $name (exit $rc)" "$dir/m-$tag.out" "$dir/a.log" "$dir/b.log"
    return
  fi
  if steady_goes_on; then
    ok "after $name the connected client goes on being served (round $(rounds))"
  else
    bad "the connected client after $name (last progress mark: round $(rounds); no reply within 30 s is a failure)" \
      "$dir/steady.out" "$dir/a.log" "$dir/b.log" $(ls "$dir"/[ab]/spool/*.log 2>/dev/null)
  fi
  if resp "$rp" check 1000 "$tag" > "$dir/check-$tag.out" 2>&1; then
    ok "after $name a new client is served: $(cat "$dir/check-$tag.out")"
  else
    bad "a new client after $name" "$dir/check-$tag.out"
  fi
}
hop A B $pb ab
hop B A $pa ba

touch "$dir/steady.stop"
for _ in $(seq 1 400); do kill -0 "$steady" 2>/dev/null || break; sleep 0.1; done
if ! kill -0 "$steady" 2>/dev/null && wait "$steady" && grep -q "every reply right" "$dir/steady.out"; then
  ok "the client connected across A -> B -> A: $(cat "$dir/steady.out")"
else
  bad "the client connected across A -> B -> A" "$dir/steady.out"
fi

# SAVE on the migrated process: rdbSave's lzf_compress keeps a 256-512 KiB table on the
# main thread's stack, deeper than it was at the checkpoint; the RDB goes home.
if resp "$rp" call SAVE > "$dir/save.out" 2>&1 && grep -qx "+OK" "$dir/save.out" && [ -s "$dir/data/dump.rdb" ]; then
  ( cd "$dir/data" && exec redis-server --port "$cp" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      --dir "$dir/data" --dbfilename dump.rdb > "$dir/copy.log" 2>&1 ) &
  pids+=($!)
  if resp "$cp" ping > /dev/null 2>&1 && resp "$cp" check 1000 copy > "$dir/check-copy.out" 2>&1; then
    ok "SAVE after A -> B -> A: the RDB written at home loads into a fresh redis-server with the same 1000 keys"
  else bad "loading the RDB saved after the migrations" "$dir/check-copy.out" "$dir/copy.log"; fi
else
  bad "SAVE after A -> B -> A (it must not crash: the restored main stack must grow)" "$dir/save.out" "$dir/redis.log" "$dir/a.log" "$dir/b.log"
fi

# kill -TERM at home reaches redis where it runs; it shuts down, and its parent (this
# script) gets its exit status from the deputy.
kill -TERM "$rpid" 2>/dev/null
for _ in $(seq 1 200); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
if ! kill -0 "$rpid" 2>/dev/null; then
  wait "$rpid"; status=$?
  if [ "$status" = 0 ] && grep -q "ready to exit" "$dir/redis.log"; then
    ok "kill -TERM at home shut redis down where it ran; exit status 0"
  else bad "redis's end after kill -TERM (status $status)" "$dir/redis.log" "$dir/a.log"; fi
else
  bad "redis still runs 20 s after kill -TERM" "$dir/redis.log" "$dir/a.log"
fi

[ "$failures" -eq 0 ]
