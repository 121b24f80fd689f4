# group_job.py DIR: a process tree that uses a process group of its own, as a shell's
# job control does (signals.sh, drain.sh). The root forks two children and puts both
# into a new group led by the first (setpgid in parent and child, as shells do), prints
# "STEP 1" and waits for DIR/go (the test moves the tree meanwhile). Then, wherever it
# runs: the relations are checked again (getpgid, getsid); the root signals the group
# (kill(-PGID, USR1)); the second child leaves the group for one of its own and joins
# it again (setpgid between members), forks a child of its own (born where it runs),
# which forks one too, and signals its own group (kill(0, USR2)), which must reach
# both children, itself too, its new child and grandchild, once each. Each child
# reports what it got on a pipe the root reads, so the output has one order. "STEP 2":
# the test sends kill -TERM -PGID (the group) where the job was started; each child's
# handler exits 10 + its number; the root prints their wait statuses and every report
# (none twice) and exits 7. The group's PGID goes to stderr (it differs from run to run).
import os
import signal
import sys
import time


def say(*words):  # one write a line: the children share this stdout
    os.write(1, (" ".join(str(w) for w in words) + "\n").encode())


d = sys.argv[1]
r, w = os.pipe()
kids = []


def child(n, group):
    os.close(r)

    def report(*words):
        os.write(w, (" ".join(str(x) for x in words) + "\n").encode())

    def usr1(sig, frame):
        report("usr1", n)
        if n == 2:
            os.setpgid(0, 0)
            alone = os.getpgid(0) == os.getpid()
            os.setpgid(0, group)
            report("setpgid 2: own group", alone, "back in the group", os.getpgid(0) == group)
            # A child of its own, born now (after a move: where it runs), in its group,
            # and that child's child (its grandchild, born there too).
            gr, gw = os.pipe()
            g = os.fork()
            if g == 0:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
                gg = os.fork()
                if gg == 0:
                    got = signal.sigtimedwait({signal.SIGUSR2}, 20)  # bounded: a miss fails the test
                    report("usr2 great-grandchild" if got else "usr2 great-grandchild: none in 20 s")
                    os._exit(0)
                os.write(gw, b"r")
                signal.sigwait({signal.SIGUSR2})
                report("usr2 grandchild")
                os.waitpid(gg, 0)
                os._exit(0)
            os.read(gr, 1)
            os.kill(0, signal.SIGUSR2)
            os.waitpid(g, 0)

    def usr2(sig, frame):
        report("usr2", n)

    def term(sig, frame):
        report("term", n)
        os._exit(10 + n)

    signal.signal(signal.SIGUSR1, usr1)
    signal.signal(signal.SIGUSR2, usr2)
    signal.signal(signal.SIGTERM, term)
    os.setpgid(0, group if group else 0)
    report("ready", n)
    while True:
        signal.pause()


for n in (1, 2):
    group = kids[0] if kids else 0
    pid = os.fork()
    if pid == 0:
        child(n, group)
    try:
        os.setpgid(pid, group if group else pid)
    except PermissionError:  # the child is there already
        pass
    kids.append(pid)
os.close(w)
reports = os.fdopen(r)


def read_reports(count):
    return sorted(reports.readline().strip() for _ in range(count))


def relations():
    g = kids[0]
    return (os.getpgid(kids[0]) == g and os.getpgid(kids[1]) == g and os.getpgid(0) != g and
            os.getsid(kids[0]) == os.getsid(0) == os.getsid(kids[1]))


say("ready:", read_reports(2))
sys.stderr.write("pgid %d\nchildren %d %d\n" % (kids[0], kids[0], kids[1]))
sys.stderr.flush()
say("groups right:", relations())
say("STEP 1")
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.05)
say("groups right after:", relations())
os.kill(-kids[0], signal.SIGUSR1)
say("group signals:", read_reports(7))
say("STEP 2")
statuses = []
for pid in kids:
    _, status = os.waitpid(pid, 0)
    statuses.append(os.waitstatus_to_exitcode(status))
say("children's statuses:", statuses)
say("the rest:", sorted(line.strip() for line in reports))
sys.exit(7)
