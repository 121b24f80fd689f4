# session_job.py DIR: a family with a terminal and a session of its own, and waits for
# children on both hosts after a move (signals.sh). The root makes a pty; child A
# makes a session with it as its controlling terminal and forks A1 into a group of
# its own (a shell's job control); child B stays in the root's group. "STEP 1", then
# it waits for DIR/go (the test moves the tree meanwhile). Then, wherever it runs:
# A gives the terminal to A1's group (tcsetpgrp) and the root types Ctrl-C on the
# pty, which A1 alone gets; A takes the terminal back and Ctrl-C reaches A alone.
# The root forks C (born where it runs, in its group there) and, while C runs, waits
# for B with waitid(P_PGID, 0) after killing it, then for A's end with a waitid
# without a siginfo (NULL infop); C ends last (it gives up after 20 s, which fails the
# test: a wait that took C instead). Reports come on one pipe the root reads; the
# output names processes, not PIDs, so it matches an undisturbed run's.
import ctypes
import fcntl
import os
import select
import signal
import sys
import termios
import time


def say(*words):
    os.write(1, (" ".join(str(w) for w in words) + "\n").encode())


d = sys.argv[1]
master, slave = os.openpty()
r, w = os.pipe()          # reports to the root
cr, cw = os.pipe()        # the root's commands to A


def report(*words):
    os.write(w, (" ".join(str(x) for x in words) + "\n").encode())


def on_int(name):
    signal.signal(signal.SIGINT, lambda sig, frame: report("SIGINT", name))


a = os.fork()
if a == 0:
    os.close(r)
    os.close(cw)
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # tcsetpgrp from the background
    on_int("A")
    a1 = os.fork()
    if a1 == 0:
        os.setpgid(0, 0)
        on_int("A1")
        while True:
            signal.pause()
    try:
        os.setpgid(a1, a1)
    except PermissionError:
        pass
    while True:
        # One command at a time (the root waits for each one's report). select first: a
        # blocking read of a pipe at home, after a move, holds off signals until it
        # returns, and Ctrl-C must reach A meanwhile.
        select.select([cr], [], [])
        cmd = os.read(cr, 64).decode().strip()
        if cmd == "fg":
            os.tcsetpgrp(slave, a1)
            report("A1 in the foreground:", os.tcgetpgrp(slave) == a1)
        elif cmd == "bg":
            os.tcsetpgrp(slave, os.getpgrp())
            report("A in the foreground:", os.tcgetpgrp(slave) == os.getpgrp())
        else:  # "end", or the root's end
            break
    os.kill(a1, signal.SIGTERM)
    _, status = os.waitpid(a1, 0)
    os._exit(30 + (os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0))

b = os.fork()
if b == 0:
    while True:
        signal.pause()

os.close(w)
os.close(cr)
os.close(slave)
reports = os.fdopen(r)
say("STEP 1")
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.05)


def command(cmd):
    os.write(cw, (cmd + "\n").encode())
    say(reports.readline().strip())


def ctrl_c():
    os.write(master, b"\x03")
    say("Ctrl-C:", reports.readline().strip())


command("fg")
ctrl_c()
command("bg")
ctrl_c()

cgo_r, cgo_w = os.pipe()
c = os.fork()
if c == 0:
    os.close(cgo_w)
    ready, _, _ = select.select([cgo_r], [], [], 20)
    os._exit(0 if ready else 1)
os.close(cgo_r)
names = {a: "A", b: "B", c: "C"}

os.kill(b, signal.SIGTERM)
got = os.waitid(os.P_PGID, 0, os.WEXITED)
say("waitid(P_PGID, 0):", names.get(got.si_pid, "?"),
    "killed by " + signal.Signals(got.si_status).name if got.si_code == os.CLD_KILLED else "exit %d" % got.si_status)

os.write(cw, b"end\n")
libc = ctypes.CDLL(None, use_errno=True)
P_ALL = 0
rc = libc.waitid(P_ALL, 0, None, os.WEXITED)
try:  # A's end still there to be waited for (WNOWAIT: only looked at), or gone?
    os.waitid(os.P_PID, a, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    reaped = False
except ChildProcessError:
    reaped = True
say("waitid(P_ALL, NULL infop):", rc, "A reaped:", reaped)
if not reaped:
    os.waitpid(a, 0)

os.close(cgo_w)
_, status = os.waitpid(c, 0)
say("C:", os.waitstatus_to_exitcode(status))
