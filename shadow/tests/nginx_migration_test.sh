#!/bin/bash
# nginx_migration_test.sh: Debian's nginx (a real event-loop server nobody here
# wrote: non-blocking sockets set with ioctl FIONBIO, edge-triggered epoll, sendfile
# and TCP_CORK) under libmig, one process (master_process off), migrated A -> B -> A
# on loopback while an HTTP/1.1 client on one keep-alive connection GETs a 300 KB
# file every 20 ms. Checks: every response is 200 with the file's exact bytes, on
# the same connection across both hops; a new client is served after each hop;
# SIGQUIT at home ends nginx gracefully, status 0. Skips (77) without nginx.
#
# usage: nginx_migration_test.sh SHADOWD MIGCTL LIBMIG
set -u
nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$nginx" ]; then
  echo "SKIP: nginx is not installed (apt-get install nginx-light)"
  exit 77
fi
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3")
source "$(dirname "$0")/loopback_lib.sh" nginx
head -c 32 /dev/urandom > "$dir/key"; chmod 600 "$dir/key"
pa=$(port) pb=$(port) np=$(port)
trap 'kill_restored "nginx -c $dir/"; cleanup' EXIT  # the restored nginx is not among $pids
"$shadowd" --listen 127.0.0.1:$pa --cluster-key "$dir/key" --socket "$dir/a/sock" --log "$dir/a.log" & pids+=($!)
"$shadowd" --listen 127.0.0.1:$pb --cluster-key "$dir/key" --socket "$dir/b/sock" --log "$dir/b.log" & pids+=($!)
for s in a b; do wait_socket "$dir/$s/sock"; done
A() { MIG_SHADOWD_SOCKET=$dir/a/sock timeout 120 "$migctl" "$@"; }

mkdir -p "$dir/www" "$dir/run"
head -c 300000 /dev/urandom > "$dir/www/blob"
# Debian's defaults where they matter (sendfile, tcp_nopush, keep-alive), one process.
cat > "$dir/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $dir/run/nginx.pid; error_log $dir/run/error.log info;
events { worker_connections 64; }
http {
  sendfile on; tcp_nopush on; keepalive_timeout 65; access_log off;
  client_body_temp_path $dir/run; proxy_temp_path $dir/run; fastcgi_temp_path $dir/run;
  uwsgi_temp_path $dir/run; scgi_temp_path $dir/run;
  server { listen 127.0.0.1:$np; root $dir/www; }
}
EOF
( LD_PRELOAD=$libmig "$nginx" -c "$dir/nginx.conf" -e "$dir/run/error.log" > "$dir/nginx.out" 2>&1
  echo "$?" > "$dir/nginx.status" ) &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$dir/run/nginx.pid" ] && break; sleep 0.05; done
npid=$(cat "$dir/run/nginx.pid" 2>/dev/null)
[ -n "$npid" ] && ok "nginx $("$nginx" -v 2>&1 | sed 's/.*nginx\///') runs under libmig on A (PID $npid, port $np)" ||
  { bad "nginx started" "$dir/nginx.out" "$dir/run/error.log"; exit 1; }

# client N: N GETs of /blob on one keep-alive connection, 20 ms apart, each checked.
client() {
  timeout 120 python3 -c '
import hashlib, http.client, sys, time
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
want = hashlib.sha256(open(path, "rb").read()).hexdigest()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for i in range(n):
    c.request("GET", "/blob")
    r = c.getresponse(); body = r.read()
    if r.status != 200 or hashlib.sha256(body).hexdigest() != want:
        print("bad response %d: status %d, %d bytes" % (i, r.status, len(body))); sys.exit(1)
    if i == 0: sock = c.sock
    elif c.sock is not sock: print("response %d came on a new connection" % i); sys.exit(1)
    time.sleep(0.02)
print("%d GETs answered right on one connection" % n)' "$np" "$1" "$dir/www/blob"
}
client 150 > "$dir/steady.out" 2>&1 &
steady=$!; pids+=($steady)
sleep 1
A migrate "$npid" --to 127.0.0.1:$pb > "$dir/m1.out" 2>&1 && ok "$(tail -1 "$dir/m1.out")" ||
  bad "migrate nginx A -> B" "$dir/m1.out" "$dir/b.log"
kill -0 "$steady" 2>/dev/null && during=yes || during=no
client 10 > "$dir/new1.out" 2>&1
grep -qx "10 GETs answered right on one connection" "$dir/new1.out" && ok "after A -> B a new client is served" ||
  bad "a new client after A -> B" "$dir/new1.out" "$dir/run/error.log"
A migrate "$npid" --to 127.0.0.1:$pa > "$dir/m2.out" 2>&1 && ok "$(tail -1 "$dir/m2.out")" ||
  bad "migrate nginx B -> A" "$dir/m2.out" "$dir/b.log"
client 10 > "$dir/new2.out" 2>&1
grep -qx "10 GETs answered right on one connection" "$dir/new2.out" && ok "after B -> A a new client is served" ||
  bad "a new client after B -> A" "$dir/new2.out" "$dir/run/error.log"
wait "$steady"
if [ "$during" = yes ] && grep -qx "150 GETs answered right on one connection" "$dir/steady.out"; then
  ok "a keep-alive client GETting a 300 KB file every 20 ms across A -> B -> A: 150 exact responses on one connection"
else bad "the keep-alive client across the hops (still running at the first hop: $during)" "$dir/steady.out" "$dir/run/error.log"; fi
kill -QUIT "$npid"
for _ in $(seq 1 200); do [ -s "$dir/nginx.status" ] && break; sleep 0.05; done
[ "$(cat "$dir/nginx.status" 2>/dev/null)" = 0 ] && ok "SIGQUIT at home ended nginx gracefully; exit status 0" ||
  bad "nginx's end (status '$(cat "$dir/nginx.status" 2>/dev/null)')" "$dir/run/error.log"
[ "$fails" -eq 0 ]
