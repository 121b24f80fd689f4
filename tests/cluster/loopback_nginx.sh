#!/bin/bash
# loopback_nginx.sh: Debian's nginx (a real event-loop server nobody here
# wrote: non-blocking sockets set with ioctl FIONBIO, edge-triggered epoll, sendfile
# and TCP_CORK) under libmig, one process (master_process off), migrated A -> B -> A
# on loopback while an HTTP/1.1 client on one keep-alive connection GETs a 300 KB
# file every 20 ms. Checks: every response is 200 with the file's exact bytes, on
# the same connection across both hops; a new client is served after each hop;
# SIGQUIT at home ends nginx gracefully, status 0. Skips (77) without nginx.
#
# usage: loopback_nginx.sh SHADOWD MIGCTL LIBMIG
set -u
nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$nginx" ]; then
  echo "SKIP: nginx is not installed (apt-get install nginx-light)"
  exit 77
fi
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3")
source "$(dirname "$0")/lib/loopback_lib.sh" nginx
new_key "$dir/key"
pa=$(port) pb=$(port) np=$(port)
trap 'kill_restored "nginx -c $dir/"; cleanup' EXIT  # the restored nginx is not among $pids
start_shadowd a $pa "$dir/key"
start_shadowd b $pb "$dir/key"
wait_shadowds a b

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
wait_until 5 test -s "$dir/run/nginx.pid"
npid=$(cat "$dir/run/nginx.pid" 2>/dev/null)
[ -n "$npid" ] && ok "nginx $("$nginx" -v 2>&1 | sed 's/.*nginx\///') runs under libmig on A (PID $npid, port $np)" ||
  { bad "nginx started" "$dir/nginx.out" "$dir/run/error.log"; exit 1; }

# client N [PROGRESS]: N GETs of /blob on one keep-alive connection, 20 ms apart, each
# checked; PROGRESS (a file) gets "at GET K" after every 25.
client() {
  timeout 120 python3 -c '
import hashlib, http.client, sys, time
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
progress = open(sys.argv[4], "a") if len(sys.argv) > 4 else None
want = hashlib.sha256(open(path, "rb").read()).hexdigest()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for i in range(n):
    c.request("GET", "/blob")
    r = c.getresponse(); body = r.read()
    if r.status != 200 or hashlib.sha256(body).hexdigest() != want:
        print("bad response %d: status %d, %d bytes" % (i, r.status, len(body))); sys.exit(1)
    if i == 0: sock = c.sock
    elif c.sock is not sock: print("response %d came on a new connection" % i); sys.exit(1)
    if progress and (i + 1) % 25 == 0: progress.write("at GET %d\n" % (i + 1)); progress.flush()
    time.sleep(0.02)
print("%d GETs answered right on one connection" % n)' "$np" "$1" "$dir/www/blob" ${2:+"$2"}
}
client 150 "$dir/steady.progress" > "$dir/steady.out" 2>&1 &
steady=$!; pids+=($steady)
# mid-conversation: 50 of its 150 GETs (about 1 s) answered
wait_line "$dir/steady.progress" '^at GET 50$' || bad "the keep-alive client GETs" "$dir/steady.out" "$dir/run/error.log"
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
wait_until 10 test -s "$dir/nginx.status"
[ "$(cat "$dir/nginx.status" 2>/dev/null)" = 0 ] && ok "SIGQUIT at home ended nginx gracefully; exit status 0" ||
  bad "nginx's end (status '$(cat "$dir/nginx.status" 2>/dev/null)')" "$dir/run/error.log"
[ "$failures" -eq 0 ]
