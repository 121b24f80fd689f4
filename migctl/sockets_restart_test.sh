#!/bin/bash
# A real network server from Debian restarted from an image on its own port: python3's
# http.server (a listening TCP socket, a thread per connection) serves a page, is
# checkpointed with --stop while a client holds a connection to it (half a request
# sent), and restarted with migctl restart. Asserted as a user sees it:
# - migctl checkpoint warns, one line naming the server's fd and the client's address,
#   that the connection is not saved; the held client then sees it reset;
# - the restarted server answers a new client on the same port with the same page
#   (same SHA-256), and no socket of it became /dev/null;
# - the server's thread that served the held connection finds it reset (python prints
#   ConnectionResetError for it) and the server goes on;
# - a second restart of the same image, once the first is ended, does the same; one
#   while it runs is refused with one line naming the fd and the address;
# - a Unix socket connected to another process is named by the checkpoint's warning;
# - redis-server, checkpointed and restarted, answers on its TCP port and Unix socket;
# - memcached, checkpointed and restarted, serves what it stored before.
# Every wait is bounded; every process started is killed by PID at the end.
# Args: MIGCTL LIBMIG
set -u
migctl=$(realpath "$1") libmig=$(realpath "$2")
if ! command -v python3 > /dev/null; then echo "SKIP: python3 is not installed"; exit 77; fi
source "$(dirname "$0")/../tests/lib/check.sh"
check_setup sockets
check_at_exit() { wait 2>/dev/null; }
# wait_line FILE PATTERN: at most 30 s until FILE has a line matching PATTERN.
wait_line() { for _ in $(seq 1 600); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }

cat > "$dir/client.py" <<'PY'
# client.py get PORT PATH: one GET, prints "STATUS SHA256"; waits at most 30 s for
#   the port to accept (a restarted server's socket appears when migctl restores it).
# client.py hold PORT: connects, sends half a request, prints "HELD LOCALPORT" and
#   then how the connection ended ("ENDED eof" or "ENDED reset") within 60 s.
import hashlib, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
def connect():
    end = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
s = connect()
if mode == "get":
    s.sendall(("GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" % sys.argv[3]).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    print(head.split(b"\r\n")[0].decode().split(" ")[1], hashlib.sha256(body).hexdigest())
else:
    s.sendall(b"GET /page.txt HTTP/1.1\r\nHost: localhost\r\n")
    print("HELD", s.getsockname()[1], flush=True)
    s.settimeout(60)
    try:
        print("ENDED eof" if s.recv(100) == b"" else "ENDED data", flush=True)
    except ConnectionResetError:
        print("ENDED reset", flush=True)
PY

mkdir "$dir/www"
head -c 300000 /dev/urandom | base64 > "$dir/www/page.txt"
want="200 $(sha256sum < "$dir/www/page.txt" | cut -d' ' -f1)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# Its stdout and stderr are pipes, as a terminal would be: a restart reconnects them to
# its own (files would be checked for changes, and the first restart changes them).
(cd "$dir/www" && exec env LD_PRELOAD="$libmig" python3 -u -m http.server --bind 127.0.0.1 "$port") \
  > >(cat > "$dir/server.out") 2> >(cat > "$dir/server.err") &
server=$!
pids+=($server)
wait_line "$dir/server.out" "^Serving HTTP on 127.0.0.1 port $port" || bad "http.server started" "$dir/server.out" "$dir/server.err"
got=$(python3 "$dir/client.py" get "$port" /page.txt 2>&1)
[ "$got" = "$want" ] && ok "http.server under libmig serves the page" || bad "first GET: '$got', want '$want'"

sockets() { find "/proc/$server/fd" -lname 'socket:*' 2>/dev/null | wc -l; }
before=$(sockets)
python3 "$dir/client.py" hold "$port" > "$dir/hold.out" 2>&1 &
holder=$!
pids+=($holder)
wait_line "$dir/hold.out" "^HELD [0-9]+" || bad "a client holds a connection" "$dir/hold.out"
cport=$(awk '/^HELD/ {print $2}' "$dir/hold.out")
# Checkpoint once the server has accepted it (one socket more), not while it waits in the
# accept queue.
for _ in $(seq 1 600); do [ "$(sockets)" -gt "$before" ] && break; sleep 0.05; done
[ "$(sockets)" -gt "$before" ] || bad "the server never accepted the held connection"
"$migctl" checkpoint "$server" -o "$dir/http.img" --stop --only > "$dir/ckpt.out" 2> "$dir/ckpt.err"
rc=$?
if [ $rc -eq 0 ] && grep -qE "^migctl checkpoint: warning: fd [0-9]+: TCP connection 127\.0\.0\.1:$port -> 127\.0\.0\.1:$cport is not saved" "$dir/ckpt.err" &&
   [ "$(grep -c "TCP connection" "$dir/ckpt.err")" -eq 1 ]; then
  ok "checkpoint --stop warns once, naming the fd and the held client 127.0.0.1:$cport"
else bad "checkpoint (exit $rc)" "$dir/ckpt.out" "$dir/ckpt.err"; fi
wait_line "$dir/hold.out" "^ENDED" && grep -qx "ENDED reset" "$dir/hold.out" &&
  ok "the held client sees its connection reset (not an end of stream that could pass for an answer)" ||
  bad "the held client did not see a reset" "$dir/hold.out"

for n in 1 2; do
  # migctl restart becomes the server (same PID).
  (cd / && exec "$migctl" restart "$dir/http.img") > "$dir/restart$n.out" 2> "$dir/restart$n.err" < /dev/null &
  restarted=$!
  pids+=($restarted)
  got=$(python3 "$dir/client.py" get "$port" /page.txt 2>&1)
  if [ "$got" = "$want" ] && ! grep -q "(socket:.*/dev/null" "$dir/restart$n.err"; then
    ok "restart $n: a new client gets the same page on port $port"
  else bad "restart $n: GET gave '$got', want '$want'" "$dir/restart$n.err"; fi
  wait_line "$dir/restart$n.err" "ConnectionResetError" && ok "restart $n: the held connection's thread finds it reset" ||
    bad "restart $n: the held connection's thread did not see a reset" "$dir/restart$n.err"
  got=$(python3 "$dir/client.py" get "$port" /nope 2>&1)
  [ "${got%% *}" = 404 ] && ok "restart $n: and a 404 for a missing page" || bad "restart $n: missing page gave '$got'" "$dir/restart$n.err"
  if [ $n = 2 ]; then
    # Its port is taken now: another restart of the image is refused, one line naming
    # the fd and the address, nothing started.
    out=$("$migctl" restart "$dir/http.img" 2>&1 < /dev/null); rc=$?
    if [ $rc -ne 0 ] && [ "$(grep -c . <<<"$out")" -eq 1 ] &&
       grep -qE "^migctl: cannot bind fd [0-9]+ to 127\.0\.0\.1:$port again: Address already in use \(another process has it now" <<<"$out"; then
      ok "a restart while the server runs is refused: $out"
    else bad "a restart over the running server (exit $rc): $out"; fi
  fi
  kill -TERM "$restarted"
  wait "$restarted" 2>/dev/null
done

# A Unix socket connected to another process cannot come back from an image: the
# checkpoint (without --stop: the job goes on) says so, naming the fd.
python3 -c 'import socket, sys
srv = socket.socket(socket.AF_UNIX); srv.bind(sys.argv[1]); srv.listen(1)
print("LISTENING", flush=True); c, _ = srv.accept(); c.recv(1)' "$dir/peer.sock" > "$dir/peer.out" 2>&1 &
peer=$!
pids+=($peer)
wait_line "$dir/peer.out" "^LISTENING" || bad "a Unix socket server started" "$dir/peer.out"
LD_PRELOAD="$libmig" python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
print("CONNECTED", s.fileno(), flush=True); time.sleep(600)' "$dir/peer.sock" > "$dir/unixjob.out" 2>&1 &
unixjob=$!
pids+=($unixjob)
wait_line "$dir/unixjob.out" "^CONNECTED" || bad "a job connected to it" "$dir/unixjob.out"
ufd=$(awk '/^CONNECTED/ {print $2}' "$dir/unixjob.out")
"$migctl" checkpoint "$unixjob" -o "$dir/unixjob.img" > "$dir/uckpt.out" 2> "$dir/uckpt.err"
if grep -qE "^migctl checkpoint: warning: fd $ufd \(socket:\[[0-9]+\]\) is a Unix socket connected outside the process" "$dir/uckpt.err"; then
  ok "checkpoint warns that fd $ufd, a Unix socket connected to another process, is not saved"
else bad "no warning for a Unix socket connected elsewhere" "$dir/uckpt.out" "$dir/uckpt.err"; fi
kill -9 "$unixjob" "$peer" 2>/dev/null
wait "$unixjob" "$peer" 2>/dev/null

# redis-server (epoll, helper threads) listening on TCP and on a Unix socket path: the
# data set it holds in memory answers on both after a restart.
if command -v redis-server > /dev/null && command -v redis-cli > /dev/null; then
  rport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  rsock="$dir/redis.sock"
  (cd "$dir" && exec env LD_PRELOAD="$libmig" redis-server --port "$rport" --bind 127.0.0.1 --unixsocket "$rsock" \
      --save '' --appendonly no --daemonize no) > >(cat > "$dir/redis.out") 2>&1 &
  redis=$!
  pids+=($redis)
  wait_line "$dir/redis.out" "Ready to accept connections" || bad "redis-server started" "$dir/redis.out"
  redis-cli -p "$rport" set greeting "hello from before" > /dev/null
  "$migctl" checkpoint "$redis" -o "$dir/redis.img" --stop --only > "$dir/rckpt.out" 2> "$dir/rckpt.err" ||
    bad "checkpoint of redis-server" "$dir/rckpt.out" "$dir/rckpt.err"
  (cd / && exec "$migctl" restart "$dir/redis.img") > "$dir/rrestart.out" 2> "$dir/rrestart.err" < /dev/null &
  rrestarted=$!
  pids+=($rrestarted)
  for _ in $(seq 1 600); do [ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ] && break; sleep 0.05; done
  tcp=$(redis-cli -p "$rport" get greeting 2>&1) unix=$(redis-cli -s "$rsock" get greeting 2>&1)
  if [ "$tcp" = "hello from before" ] && [ "$unix" = "hello from before" ]; then
    ok "redis-server restarted answers on its TCP port and its Unix socket"
  else bad "redis after restart: TCP '$tcp', Unix '$unix'" "$dir/rrestart.err" "$dir/redis.out"; fi
  redis-cli -p "$rport" shutdown nosave > /dev/null 2>&1
  wait "$rrestarted" 2>/dev/null
else
  echo "skip - redis-server is not installed (tests/lib/setup.sh installs it)"
fi

# memcached (libevent, a listening socket per address, worker threads with their own
# notification pipes): a value stored before the checkpoint is served after the restart.
if command -v memcached > /dev/null; then
  mport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$dir/mc.py" <<'PY'
# mc.py PORT set|get: one memcached text-protocol command; waits at most 30 s for the
# port to accept (a restarted server's socket appears when migctl restores it).
import socket, sys, time
end = time.monotonic() + 30
while True:
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
        break
    except ConnectionRefusedError:
        if time.monotonic() > end:
            raise
        time.sleep(0.05)
s.sendall(b"set greeting 0 0 17\r\nhello from before\r\n" if sys.argv[2] == "set" else b"get greeting\r\n")
want = b"STORED\r\n" if sys.argv[2] == "set" else b"END\r\n"
data = b""
while not data.endswith(want):
    b = s.recv(4096)
    if not b:
        break
    data += b
print(data.decode().replace("\r\n", "|"))
PY
  (exec env LD_PRELOAD="$libmig" memcached -u "$(id -un)" -l 127.0.0.1 -p "$mport" -U 0 -t 2) \
    > >(cat > "$dir/memcached.out") 2>&1 &
  mc=$!
  pids+=($mc)
  got=$(python3 "$dir/mc.py" "$mport" set 2>&1)
  [ "$got" = "STORED|" ] || bad "memcached set: '$got'" "$dir/memcached.out"
  "$migctl" checkpoint "$mc" -o "$dir/mc.img" --stop --only > "$dir/mckpt.out" 2> "$dir/mckpt.err" ||
    bad "checkpoint of memcached" "$dir/mckpt.out" "$dir/mckpt.err"
  (cd / && exec "$migctl" restart "$dir/mc.img") > "$dir/mrestart.out" 2> "$dir/mrestart.err" < /dev/null &
  mrestarted=$!
  pids+=($mrestarted)
  got=$(python3 "$dir/mc.py" "$mport" get 2>&1)
  if [ "$got" = "VALUE greeting 0 17|hello from before|END|" ]; then
    ok "memcached restarted serves on its port what it stored before"
  else bad "memcached after restart: '$got'" "$dir/mrestart.err"; fi
  kill -TERM "$mrestarted"
  wait "$mrestarted" 2>/dev/null
else
  echo "skip - memcached is not installed (tests/lib/setup.sh installs it)"
fi

[ $fails -eq 0 ] && echo "PASS" && exit 0
echo "FAILED: $fails"
exit 1
