# standin_job.py DIR: a process group whose members are on two hosts after a move
# (group_standin.sh). The job leads a group of its own and forks a member at home
# ("STEP 1"), then waits for DIR/go (the test moves both meanwhile). Then it forks a
# child where it runs (born away) and says "STEP 2". Signals sent to the group where it
# was started reach all three: STOP and CONT stop and continue them; USR1 makes each
# print a line; TERM ends the member (status 13) and the child (14), and the job, which
# catches it, reaps both with waitpid(-PGID) (one at home, one where it runs), says
# so, finds no third ("STEP 3"), forks a second child where it runs ("STEP 4") and
# waits for the test's SIGKILL of the group, which must end that child too. The
# group's PGID and the children's PIDs go to stderr.
import os
import signal
import sys
import time

d = sys.argv[1]


def say(*words):  # one write a line: the processes share this stdout
    os.write(1, (" ".join(str(w) for w in words) + "\n").encode())


def waiter(name, status):
    # A process of the group: a line for USR1, its own status for TERM.
    signal.signal(signal.SIGUSR1, lambda s, f: say("usr1", name))
    signal.signal(signal.SIGTERM, lambda s, f: os._exit(status))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGTERM})
    while True:
        signal.pause()


# Blocked until each process has its handlers: a signal sent early is not lost.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
os.setpgid(0, 0)
pgid = os.getpgid(0)
member = os.fork()
if member == 0:
    waiter("member", 13)
print("pgid", pgid, file=sys.stderr, flush=True)
say("STEP 1")
while not os.path.exists(d + "/go"):
    time.sleep(0.05)

ready_r, ready_w = os.pipe()
child = os.fork()
if child == 0:
    os.close(ready_r)
    signal.signal(signal.SIGUSR1, lambda s, f: say("usr1", "child born away"))
    signal.signal(signal.SIGTERM, lambda s, f: os._exit(14))
    os.write(ready_w, b"r")
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGTERM})
    while True:
        signal.pause()
os.read(ready_r, 1)
print("child", child, file=sys.stderr, flush=True)
terms = []
signal.signal(signal.SIGUSR1, lambda s, f: say("usr1", "job"))
signal.signal(signal.SIGTERM, lambda s, f: terms.append(s))
say("STEP 2")
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGTERM})
while not terms:
    signal.pause()

names = {member: "member", child: "child born away"}
for _ in range(2):
    pid, status = os.waitpid(-pgid, 0)
    say("reaped", names.get(pid, "an unknown process"), "status", os.waitstatus_to_exitcode(status))
try:
    os.waitpid(-pgid, 0)
    say("a third process reaped")
except ChildProcessError:
    say("no more children in the group")
say("STEP 3")

second = os.fork()
if second == 0:
    os.write(ready_w, b"r")
    while True:
        time.sleep(60)
os.read(ready_r, 1)
print("second", second, file=sys.stderr, flush=True)
say("STEP 4")
while True:
    time.sleep(60)
