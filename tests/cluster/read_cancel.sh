#!/bin/bash
# read_cancel.sh: a signal the program handles reaches a moved job blocked in a read
# of a home stream at once, as without mig (issue 15). A python3 job moved a -> b
# reads a named pipe whose writers stay at home (every read is a forwarded call that
# waits at home). (1) `kill -USR1` at home while it waits: its handler prints on b at
# once and the read, with siginterrupt(USR1, True), fails with EINTR (read through
# libc by ctypes: os.read would retry, PEP 475); (2) a line written at home just
# before another USR1 is read once (the read at home ended with it before the cancel,
# or was cancelled and the next read takes it); (3) `kill -INT` while os.read waits:
# KeyboardInterrupt, caught; (4) `kill -USR2`, whose handler has SA_RESTART: the
# signal reaches the job at once (python's C handler writes it to its wakeup fd) and
# the read is made again, no EINTR; (5) `kill -TSTP` (Ctrl-Z's), then `kill -STOP`,
# while os.read waits: the job on b and its deputy on a are stopped (state T), `kill
# -CONT` continues both and the read made again takes the next line; (6) `kill -TSTP`,
# `kill -TTIN`, then `kill -STOP`, sent on b itself while os.read waits: the job stops
# there at once and its deputy on a too (state T), `kill -CONT` on b continues both and
# the read takes the next line; (7) every line
# written at home is read exactly once, in order. (Before: the handler waited until
# more data came.)
#
# usage: read_cancel.sh OPTIONS (cluster_lib.sh); meson runs it as test
# 'migration-read-cancel' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_up a b

READER='import ctypes, errno, os, signal, sys, time
d = sys.argv[1]
def say(*words):  # one write: a handler running meanwhile cannot split the line
    os.write(1, (" ".join(words) + "\n").encode())
libc = ctypes.CDLL(None, use_errno=True)
signal.signal(signal.SIGUSR1, lambda s, f: say("handler USR1"))
signal.siginterrupt(signal.SIGUSR1, True)
signal.signal(signal.SIGUSR2, lambda s, f: say("handler USR2"))
signal.siginterrupt(signal.SIGUSR2, False)  # SA_RESTART
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with INT ignored
# python runs its handlers between bytecodes: the C handler under them writes each
# signal to this file at once (a USR2 shows here before the restarted read returns)
signal.set_wakeup_fd(os.open(d + "/wakeup", os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK))
fd = os.open(d + "/fifo", os.O_RDWR)  # a reader and a writer: never EOF
i = 0
while not os.path.exists(d + "/GO"):
    say("STEP", str(i)); i += 1; time.sleep(0.1)
def got(data):
    for line in data.decode().split():
        say("got", line)
    return "os.read" in data.decode()
buf = ctypes.create_string_buffer(4096)
while True:
    say("reading")
    n = libc.read(fd, buf, 4096)
    if n < 0:
        say("read failed:", errno.errorcode[ctypes.get_errno()])
    elif got(buf.raw[:n]):
        break
while True:
    say("reading")
    try:
        got(os.read(fd, 4096))
    except KeyboardInterrupt:
        say("KeyboardInterrupt caught")'
out() { tr -d '\r' <"$(jfile job out)" 2>/dev/null; }
count() { out | grep -cx "$1"; }
fifo="$(jdir job)/data/fifo"
wakeups() { stat -c %s "$(jfile job data)/wakeup" 2>/dev/null || echo 0; }
bpid=""
# Blocked in a read: it said "reading" last, and its thread waits for home's answer
# in the shim's ppoll (271).
# (A handler's line may come after "reading": python runs a handler between bytecodes,
# so one for a signal that came as the last read returned can run just after.)
in_read() { [[ $(out | grep -v '^handler ' | tail -n 1) == reading && $(hx b cat "/proc/$bpid/syscall" 2>/dev/null | cut -d' ' -f1) == 271 ]]; }
# state HOST PID: the process's state letter there (T: stopped).
state() { hx "$1" awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$2/stat" 2>/dev/null; }
# says TEXT [N]: 0 once the line TEXT has come N times (default 1).
has() { (( $(count "$1") >= $2 )); }
says() { wait_until 20 has "$1" "${2:-1}"; }
check() {  # check WHAT LINE [N]
  if says "$2" "${3:-1}"; then ok "$1"; else fail "$1: no '$2' in its output"; detail "$(jfile job out)" "its stdout"; detail "$(jfile job err)" "its stderr"; fi
}

mkdir -p "$(jfile job data)" && mkfifo "$(jfile job data)/fifo"
start_job job mig /usr/bin/python3 -c "$READER" @DIR@ || cluster_end
if hop job a b; then
  bpid=$(awk '/runs here as PID/ { p = $NF } END { print p }' "$T/shadowd-b.log")
  touch "$(jfile job data)/GO"
  wait_until 20 in_read && hx a sh -c "echo 1 >$fifo"
  check "the job on b read a line written at home into the pipe" "got 1"

  wait_until 20 in_read || fail "the job on b (PID $bpid there) is not waiting for home in its read"
  hx a kill -USR1 "${PID[job]}"
  check "kill -USR1 at home ran the job's handler on b while its read waited at home" "handler USR1"
  check "the read interrupted by that handler (siginterrupt True) failed with EINTR" "read failed: EINTR"
  wait_until 20 in_read && hx a sh -c "echo 2 >$fifo"
  check "the next read took the next line written at home" "got 2"

  wait_until 20 in_read && hx a sh -c "echo 3 >$fifo; kill -USR1 ${PID[job]}"
  check "a USR1 sent right after a line was written ran the handler" "handler USR1" 2
  check "the line written just before that USR1 was read" "got 3"
  wait_until 20 in_read
  eintr=$(count "read failed: EINTR") woken=$(wakeups)
  hx a kill -USR2 "${PID[job]}"
  if wait_until 20 eval '(( $(wakeups) > woken ))'; then
    ok "kill -USR2 at home (SA_RESTART) reached the job's handler on b while its read waited at home"
  else
    fail "kill -USR2 at home (SA_RESTART) did not reach the job's handler on b while its read waited at home"
  fi
  if wait_until 20 in_read && (( $(count "read failed: EINTR") == eintr )); then
    ok "the read interrupted by it was made again (no EINTR) and waits at home"
  else
    fail "the read interrupted by a USR2 with SA_RESTART was not made again: $(count "read failed: EINTR") EINTR, $eintr before; its last line '$(out | tail -n 1)', its system call on b: $(hx b cat "/proc/$bpid/syscall" 2>/dev/null | cut -d' ' -f1)"
  fi
  hx a sh -c "echo 5 >$fifo"
  check "the restarted read took the next line written at home" "got 5"
  (( $(count "read failed: EINTR") == eintr )) ||
    fail "a read interrupted by a USR2 with SA_RESTART failed with EINTR: $(count "read failed: EINTR") EINTR, $eintr before"
  check "and python ran its USR2 handler once it returned" "handler USR2"
  hx a sh -c "echo os.read >$fifo"
  says "got os.read"

  wait_until 20 in_read
  hx a kill -INT "${PID[job]}"
  check "kill -INT at home raised KeyboardInterrupt on b in os.read waiting at home" "KeyboardInterrupt caught"
  hx a sh -c "echo 4 >$fifo"
  check "after it, the next line written at home was read" "got 4"

  # A stop signal sent at home (Ctrl-Z's TSTP, which the deputy passes on; STOP, which
  # shadowd on a hears of from its stop watch) reaches the job on b as SIGSTOP, which
  # its wait for home's answer cannot hold off; CONT makes the read again. The same
  # stops sent to the job on b itself: its wait lets them in at their default action,
  # so it stops at once, as a local process would (before: once its read ended), and
  # its link process tells home, whose shadowd stops the deputy too (before: nothing
  # told home, the deputy ran on); CONT on b continues both.
  for hs in aTSTP aSTOP bTSTP bTTIN bSTOP; do
    host=${hs:0:1} sig=${hs:1}
    pid=$bpid && [[ $host == a ]] && pid=${PID[job]}
    wait_until 20 in_read
    hx "$host" kill -"$sig" "$pid"
    if wait_until 20 eval '[[ $(state b "$bpid") == T && $(state a "${PID[job]}") == T ]]'; then
      ok "kill -$sig on $host stopped the job on b while os.read waited at home, and its deputy on a (state T)"
    else
      fail "after kill -$sig on $host: the job's state on b '$(state b "$bpid")', its deputy's on a '$(state a "${PID[job]}")' (want T, T)"
    fi
    hx "$host" kill -CONT "$pid"
    if wait_until 20 eval '[[ $(state b "$bpid") != T && $(state a "${PID[job]}") != T ]]'; then
      ok "kill -CONT on $host continued both"
    else
      fail "after kill -CONT on $host: the job's state on b '$(state b "$bpid")', its deputy's on a '$(state a "${PID[job]}")'"
    fi
    wait_until 20 in_read && hx a sh -c "echo $hs >$fifo"
    check "the read made again after the $sig on $host took the next line written at home" "got $hs"
  done

  if [[ $(out | grep '^got ' | tr '\n' ' ') == "got 1 got 2 got 3 got 5 got os.read got 4 got aTSTP got aSTOP got bTSTP got bTTIN got bSTOP " ]]; then
    ok "every line written at home was read exactly once, in order"
  else
    fail "the lines written at home were not each read once, in order: $(out | grep '^got ' | tr '\n' ' ')"
  fi
fi
kill_job job

# A background job of a terminal session at home reading that terminal stops with
# SIGTTIN, and one writing to it with SIGTTOU when the terminal has TOSTOP set, moved or
# not. The session (a pty made by python's pty.fork, TOSTOP set) is a plain python3 at
# home, its leader; it starts the job (python3 under mig) in a process group of its
# own, so in the background, its stdin the pty. Moved a -> b, the job reads (writes)
# the terminal: its leader's waitpid(WUNTRACED) sees it stopped, as at home; it then
# makes the job's group the foreground one, types a line and continues it (the shell's
# `fg`): the job reads the line once (its line reaches the terminal once) and ends with
# status 0. (Before: the write went on, the job never stopped.)
LEADER='import os, pty, signal, sys, termios, time
d, libmig = sys.argv[1], sys.argv[2]
pid, master = pty.fork()
if pid == 0:
    attrs = termios.tcgetattr(0)
    attrs[3] |= termios.TOSTOP
    termios.tcsetattr(0, termios.TCSANOW, attrs)
    job = os.fork()
    if job == 0:
        os.setpgid(0, 0)
        os.dup2(os.open(d + "/../out", os.O_WRONLY | os.O_APPEND), 1)
        os.dup2(os.open(d + "/../err", os.O_WRONLY | os.O_APPEND), 2)
        os.execve(sys.executable, [sys.executable, "-c", sys.argv[3], d, sys.argv[4]],
                  dict(os.environ, LD_PRELOAD=libmig))
    os.setpgid(job, job)
    with open(d + "/jobpid", "w") as f: f.write(str(job))
    _, status = os.waitpid(job, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        say = "stopped by " + signal.Signals(os.WSTOPSIG(status)).name
    else:
        say = "not stopped: status " + str(status)
    with open(d + "/leader", "w") as f: f.write(say + "\n")
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.tcsetpgrp(0, job)
    os.kill(job, signal.SIGCONT)
    _, status = os.waitpid(job, 0)
    with open(d + "/leader", "a") as f: f.write("ended: " + str(os.waitstatus_to_exitcode(status)) + "\n")
    os._exit(0)
while not os.path.exists(d + "/leader"): time.sleep(0.05)
os.write(master, b"typed\n")
with open(d + "/terminal", "wb") as seen:
    try:
        while (data := os.read(master, 4096)): seen.write(data)
    except OSError: pass
os.waitpid(pid, 0)'
TTYJOB='import os, sys, time
d, mode = sys.argv[1], sys.argv[2]
i = 0
while not os.path.exists(d + "/GO"):
    print("STEP", i, flush=True); i += 1; time.sleep(0.1)
if mode == "read":
    print("read:", os.read(0, 100).decode().strip(), flush=True)
else:
    os.write(0, b"written to the terminal\n")
    print("wrote", flush=True)'
# tty_case NAME MODE SIGNAL LAST-LINE: the job NAME reads or writes its terminal from
# the background on b; its leader must see it stopped by SIGNAL, and once in the
# foreground it ends with LAST-LINE as its last line of output.
tty_case() {
  local name=$1 mode=$2 sig=$3 last=$4 leader
  leader="$(jfile "$name" data)/leader"
  start_job "$name" plain /usr/bin/python3 -c "$LEADER" @DIR@ "$LIBMIG" "$TTYJOB" "$mode" || return
  wait_until 20 test -s "$(jfile "$name" data)/jobpid" && PID[$name]=$(cat "$(jfile "$name" data)/jobpid")
  if [[ -n ${PID[$name]-} ]] && hop "$name" a b; then
    touch "$(jfile "$name" data)/GO"
    if wait_until 20 test -s "$leader" && [[ $(head -n 1 "$leader") == "stopped by $sig" ]]; then
      ok "$name: the background job moved to b ($mode of its home terminal) stopped: its leader's waitpid(WUNTRACED) says $(head -n 1 "$leader")"
    else
      fail "$name: the background job moved to b ($mode of its home terminal): its leader saw '$(head -n 1 "$leader" 2>/dev/null)' (want: stopped by $sig, as a local job)"
    fi
    if wait_job "$name" 20 && [[ $(tail -n 1 "$leader") == "ended: 0" && $(tr -d '\r' <"$(jfile "$name" out)" | tail -n 1) == "$last" ]]; then
      ok "$name: brought to the foreground and continued, it ended with status 0 and '$last'"
    else
      fail "$name: after fg: its leader says '$(tail -n 1 "$leader" 2>/dev/null)', its last line '$(tail -n 1 "$(jfile "$name" out)")' (want ended: 0, $last)"
      detail "$(jfile "$name" err)" "its stderr"
    fi
  fi
  kill_job "$name"
}
tty_case tty read SIGTTIN "read: typed"
tty_case ttyout write SIGTTOU wrote
if [[ $(tr -d '\r' <"$(jfile ttyout data)/terminal" 2>/dev/null | grep -cx "written to the terminal") == 1 ]]; then
  ok "ttyout: its line reached the terminal once"
else
  fail "ttyout: its line reached the terminal $(tr -d '\r' <"$(jfile ttyout data)/terminal" 2>/dev/null | grep -cx "written to the terminal") times (want 1)"
fi


cluster_end
