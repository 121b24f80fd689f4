#!/usr/bin/env python3
"""producer.py: the head of the `producer | cat | sha256sum` pipelines. Writes 300000
numbered lines to stdout, flushing every 10000 and pausing 100 ms there (pacing: the
stream lasts about 3 s, so that a migration of the cat lands mid-stream). After each
flush it prints "at line I" to stderr: a test waits for such a line to pick a moment
mid-stream (never a sleep)."""
import sys
import time

for i in range(300000):
    sys.stdout.write("line %d of the producer\n" % i)
    if i % 10000 == 0:
        sys.stdout.flush()
        sys.stderr.write("at line %d\n" % i)
        sys.stderr.flush()
        time.sleep(0.1)
