#!/bin/bash
# push_read.sh: reads of a home TCP stream pushed ahead to the job's host (issue 13,
# shadow/pushed_reads.h). A python3 job on a connects to a sender on a, moves a -> b,
# then reads 8 MiB with read(2) (every read served on b from bytes pushed there, taken
# at home after): its SHA-256 is the sender's. It pauses 1 MiB in: the sender must
# stop well short of 8 MiB (pushing is flow-controlled: the bytes the job has not read
# stay in the kernel at home and hold the sender back), and the deputy's memory must
# not grow by what waits. It reads on to 4 MiB while its link's TCP connection is
# reset on b (ss -K: resumed, bytes pushed again from where they were); paused there
# with bytes pushed to b and not read, it moves b -> c; paused again 6 MiB in, it comes
# home (c -> a): none is lost, none doubled. After the last byte it reads the end twice
# (0 both times). Then a python3 root and its child, both reading one home pipe, move
# a -> b as a tree: its records are read once each between the two (not pushed).
#
# usage: push_read.sh OPTIONS (cluster_lib.sh); meson runs it as test
# 'migration-push-read' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
export MIG_PUSH_READS=1  # on by default (shadow/pushed_reads.cc); every shadowd here pushes, whatever the caller's environment
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_up a b c

SENDER='import hashlib, random, socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(1)
print("port", srv.getsockname()[1], flush=True)
c, _ = srv.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
rng, h, sent = random.Random(13), hashlib.sha256(), 0
while sent < 8 << 20:
    chunk = rng.randbytes(65536); c.sendall(chunk); h.update(chunk); sent += len(chunk)
    print("sent", sent, flush=True)
c.close()
print("done", h.hexdigest(), flush=True)'

READER='import hashlib, os, socket, sys, time
d, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.connect(("127.0.0.1", port)); fd = s.fileno()
i = 0
while not os.path.exists(d + "/GO"):
    print("STEP", i, flush=True); i += 1; time.sleep(0.1)
h, n = hashlib.sha256(), 0
def read_until(limit):
    global n
    while n < limit:
        b = os.read(fd, 65536)
        if not b: return False
        h.update(b); n += len(b)
    return True
for k, upto in ((1, 1 << 20), (2, 4 << 20), (3, 6 << 20)):
    read_until(upto)
    print("paused at", n, flush=True)
    while not os.path.exists(d + "/RESUME%d" % k): time.sleep(0.05)
read_until(1 << 30)
print("end after", n, h.hexdigest(), flush=True)
print("again", len(os.read(fd, 65536)), flush=True)'

sent() { awk '$1 == "sent" { n = $2 } END { print n + 0 }' "$T/sender.out"; }
hx a python3 -c "$SENDER" >"$T/sender.out" 2>&1 & bg_pids+=($!)
wait_until 20 grep -q '^port ' "$T/sender.out" || { fail "the sender on a did not start"; cluster_end; }
port=$(awk '$1 == "port" { print $2 }' "$T/sender.out")
start_job job mig /usr/bin/python3 -c "$READER" @DIR@ "$port" || cluster_end
if hop job a b; then
  touch "$(jfile job data)/GO"
  wait_until 30 grep -q '^paused at' "$(jfile job out)" || fail "the job on b did not read its first MiB"
  if grep -q 'reads of its home streams are pushed ahead' "$T/shadowd-b.log"; then
    ok "its reads on b are served from bytes pushed ahead (b's log)"
  else
    fail "no read on b was served from bytes pushed ahead"
    shadowd_logs b
  fi
  # Paused: the sender goes on until the kernel's buffers at home are full, then
  # waits. Settled once its count stays the same for a second.
  last=-1
  for _ in $(seq 1 30); do now=$(sent); (( now == last )) && break; last=$now; sleep 1; done
  paused_at=$(sent)
  bpid=$(awk '/runs here as PID/ { p = $NF } END { print p }' "$T/shadowd-b.log")
  if (( paused_at < 4 << 20 )); then
    ok "the job paused on b: the sender is held back at $paused_at of 8388608 bytes (flow control)"
  else
    fail "the job paused on b, but the sender got $paused_at of 8388608 bytes out: not held back"
  fi
  rss_deputy() { hx a awk '/^VmRSS/ { print $2 }' "/proc/${PID[job]}/status"; }
  rss1=$(rss_deputy)
  # Moved on while bytes were pushed to b and not read.
  pauses() { grep -c "^paused at" "$(jfile job out)"; }
  resumed() { grep -c "mig-link: job [0-9]*: its direct link home resumed after" "$T/shadowd-b.log"; }
  touch "$(jfile job data)/RESUME1"
  hx b ss -K dst "${ADDR[a]}" and not dport = ":$PORT" >"$T/ss.out" 2>&1
  if wait_until 30 eval '(( $(pauses) >= 2 && $(resumed) >= 1 ))'; then
    ok "reading on b with its link reset (ss -K): resumed, and on to 4 MiB"
  else
    fail "the job on b did not read on to 4 MiB with its link reset (resumed: $(resumed))"
    shadowd_logs b
  fi
  if hop job b c 0; then
    touch "$(jfile job data)/RESUME2"
    wait_until 30 eval '(( $(pauses) >= 3 ))' || fail "the job on c did not read on to 6 MiB"
    hop job c a 0 && touch "$(jfile job data)/RESUME3"
    if wait_job job 60 && [[ $STATUS == 0 ]]; then
      want=$(awk '$1 == "done" { print $2 }' "$T/sender.out")
      if [[ -n $want ]] && grep -qx "end after 8388608 $want" "$(jfile job out)"; then
        ok "its link reset, moved b -> c and home mid-stream, the job read all 8 MiB once, in order: its SHA-256 is the sender's"
      else
        fail "the job's bytes are not the sender's (sender: '$want')"
        detail "$(jfile job out)" "its stdout"
      fi
      if grep -qx 'again 0' "$(jfile job out)"; then
        ok "after the last byte, the end of the stream read twice (0, 0)"
      else
        fail "the end of the stream was not read as 0 after the last byte"
        detail "$(jfile job out)" "its stdout"
      fi
    else
      fail "the job did not end with status 0 (status $STATUS)"
      detail "$(jfile job out)" "its stdout"
      detail "$(jfile job err)" "its stderr"
      shadowd_logs a b c
    fi
  fi
  if [[ -n $rss1 ]] && (( rss1 < 64 * 1024 )); then
    ok "the deputy holds ${rss1} KiB while the job waits with bytes unread (nothing buffered at home)"
  elif [[ -n $rss1 ]]; then
    fail "the deputy holds ${rss1} KiB while the job waits with bytes unread"
  fi
fi
kill_job job

# Two readers of one home pipe: a python3 root and its child, both holding its read
# end, move a -> b as a tree (each member its own deputy at home). Each reads 16-byte
# records the root writes; a byte the other could have had is never pushed to one of
# them (deputy/sole_reader.h): the records are read once each between the two, and b's
# log says why the pipe's reads stay calls. (Pushed to both, each was given the same
# records, and each deputy's take then read the other's: records twice, others lost.)
TWO='import os, time
r, w = os.pipe()
kid = os.fork()
i = 0
while not os.path.exists("GO"):
    if kid:
        print("STEP", i, flush=True); i += 1
    time.sleep(0.1)
if kid:
    for k in range(400):
        os.write(w, b"%015d\n" % k)
    os.write(w, b"END".rjust(15) + b"\n" + b"END".rjust(15) + b"\n")
got = []
while True:
    b = os.read(r, 16)
    if not b or b.strip() == b"END":
        break
    got.append(int(b))
if not kid:
    open("child", "w").write(" ".join(map(str, got)))
    os._exit(0)
os.waitpid(kid, 0)
both = got + [int(x) for x in open("child").read().split()]
print("records read once each between the two:", sorted(both) == list(range(400)), flush=True)'
start_job two mig /usr/bin/python3 -c "$TWO" || cluster_end
if hop two a b; then
  touch "$(jfile two GO)"
  if wait_job two 60 && [[ $STATUS == 0 ]] && grep -qx "records read once each between the two: True" "$(jfile two out)"; then
    ok "two processes reading one home pipe, moved a -> b as a tree: its 400 records read once each between the two"
  else
    fail "two readers of one home pipe: status $STATUS, records not read once each"
    detail "$(jfile two out)" "its stdout"; detail "$(jfile two err)" "its stderr"; shadowd_logs a b
  fi
  if grep -q "reads of fd [0-9]* stay calls: another process at home may read it too" "$T/shadowd-b.log"; then
    ok "b's log: the pipe's reads stay calls, another process at home may read it"
  else
    fail "b's log does not say the shared pipe's reads stay calls"
  fi
fi
kill_job two

cluster_end
