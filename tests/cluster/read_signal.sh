#!/bin/bash
# read_signal.sh: a signal sent at home reaches a moved job blocked in a read of a
# home stream (issue 15). A python3 job moved a -> b reads a named pipe at home (its
# writers stay at home: every read is a forwarded call that waits at home); a line
# written at home is read once; then `kill -TERM` of the job's PID at home, SIGTERM
# left at its default, ends the job at once, as it would without mig. (Before: the
# signal was held until the read returned, that is, until more data came.)
#
# usage: read_signal.sh OPTIONS (cluster_lib.sh); meson runs it as test
# 'migration-read-signal' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_up a b

READER='import os, sys, time
d = sys.argv[1]
fd = os.open(d + "/fifo", os.O_RDWR)  # a reader and a writer: never EOF
i = 0
while not os.path.exists(d + "/GO"):
    print("STEP", i, flush=True); i += 1; time.sleep(0.1)
while True:
    print("reading", flush=True)
    print("got", os.read(fd, 100).decode().strip(), flush=True)'
reads() { grep -c '^reading$' "$(jfile job out)" 2>/dev/null; }

mkdir -p "$(jfile job data)" && mkfifo "$(jfile job data)/fifo"
start_job job mig /usr/bin/python3 -c "$READER" @DIR@ || cluster_end
if hop job a b; then
  touch "$(jfile job data)/GO"
  if wait_until 20 eval '(( $(reads) >= 1 ))' && hx a sh -c "echo hello >$(jdir job)/data/fifo" &&
     wait_until 20 eval '(( $(reads) >= 2 ))'; then
    ok "the job on b read a line written at home into the pipe"
  else
    fail "the job on b did not read the line written at home into the pipe"
    detail "$(jfile job out)" "its stdout"
    detail "$(jfile job err)" "its stderr"
  fi
  # Blocked in the read: its thread waits for home's answer in the shim's ppoll (271).
  bpid=$(awk '/runs here as PID/ { p = $NF } END { print p }' "$T/shadowd-b.log")
  in_read() { [[ $(hx b cat "/proc/$bpid/syscall" 2>/dev/null | cut -d' ' -f1) == 271 ]]; }
  wait_until 10 in_read || fail "the job on b (PID $bpid there) is not waiting for home in its read"
  hx a kill -TERM "${PID[job]}"
  if wait_job job 10 && [[ $STATUS == 143 ]]; then
    ok "kill -TERM at home ended the job blocked on b in a read of the pipe (status $STATUS)"
  else
    fail "kill -TERM at home did not end the job blocked on b in a read of the pipe (status $STATUS after 10 s)"
    detail "$(jfile job err)" "its stderr"
  fi
  if [[ $(grep -c '^got' "$(jfile job out)") == 1 ]] && grep -qx 'got hello' "$(jfile job out)"; then
    ok "the line written at home was read once"
  else
    fail "the line written at home was not read exactly once"
    detail "$(jfile job out)" "its stdout"
  fi
fi
kill_job job

cluster_end
