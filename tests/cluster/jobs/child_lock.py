# child_lock.py DIR: a python3 job whose child, forked after the job has moved, takes an
# fcntl record lock (lockf) on a home file; home_files.sh checks from home that the lock
# is held there while the child holds it, and free once the child has let it go.
# It prints STEP lines until DIR/go exists (made at home once the job runs away), then
# "child locked" once its child holds the lock, and "child status N" at the end; the
# child lets go once DIR/release exists.
import fcntl
import os
import sys
import time

d = sys.argv[1]
path, go, release = (os.path.join(d, n) for n in ("locked.dat", "go", "release"))
with open(path, "w") as f:
    f.write("x" * 100)
step = 0
while not os.path.exists(go):
    step += 1
    print("STEP", step, flush=True)
    time.sleep(0.1)
pid = os.fork()
if pid == 0:
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
    print("child locked", flush=True)
    while not os.path.exists(release):
        time.sleep(0.05)
    fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child status", os.waitstatus_to_exitcode(status), flush=True)
