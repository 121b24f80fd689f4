# steps.py: what the python jobs written inline in the cluster tests share (born_away.sh,
# tree_move.sh). A job prints "STEP N" lines while it waits for a file the test makes at
# a moment it chose (wait_step in cluster_lib.sh reads them), and writes each line in
# one write(2): several processes of a family share one stdout, and a line must not be
# split between them.
import os
import time

_steps = 0


def say(*words):
    os.write(1, (" ".join(str(w) for w in words) + "\n").encode())


def steps_until(name):
    global _steps
    while not os.path.exists(name):
        _steps += 1
        say("STEP", _steps)
        time.sleep(0.05)


def wait_for(name):
    while not os.path.exists(name):
        time.sleep(0.05)
