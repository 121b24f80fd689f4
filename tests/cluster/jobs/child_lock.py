# child_lock.py DIR: fcntl record locks (lockf) of a python3 job and of its children
# forked after the job has moved; home_files.sh looks at them from home. The job locks
# bytes 20-29 of a home file, prints STEP lines until DIR/go exists (made at home once
# the job runs away), then forks: the child tries the job's bytes through the fd it
# inherited (the job's lock keeps it out, as between two processes), opens the file
# itself and closes it (at home, where the job's lock is, that close must not drop it),
# locks bytes 0-9 and says "child locked"; once DIR/release exists it ends without letting go (its end
# drops its lock). The job prints "child status N", then forks a second child that
# locks bytes 40-49, says "killed child locked" and kills itself with SIGKILL once
# DIR/kill exists ("killed child status -9"), then "done" once DIR/end exists.
import fcntl
import os
import signal
import sys
import time


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.05)


d = sys.argv[1]
path, go, release, kill, end = (os.path.join(d, n) for n in ("locked.dat", "go", "release", "kill", "end"))
with open(path, "w") as f:
    f.write("x" * 100)
fd = os.open(path, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 20)
step = 0
while not os.path.exists(go):
    step += 1
    print("STEP", step, flush=True)
    time.sleep(0.1)
pid = os.fork()
if pid == 0:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 20)
        print("child took the job's bytes", flush=True)
    except OSError:
        print("child kept out of the job's bytes", flush=True)
    os.close(os.open(path, os.O_RDONLY))
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
    print("child locked", flush=True)
    wait_for(release)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child status", os.waitstatus_to_exitcode(status), flush=True)
pid = os.fork()
if pid == 0:
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 40)
    print("killed child locked", flush=True)
    wait_for(kill)
    os.kill(os.getpid(), signal.SIGKILL)
_, status = os.waitpid(pid, 0)
print("killed child status", os.waitstatus_to_exitcode(status), flush=True)
wait_for(end)
print("done", flush=True)
