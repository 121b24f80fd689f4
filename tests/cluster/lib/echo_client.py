#!/usr/bin/env python3
"""echo_client.py ADDR PORT N NAME [PROGRESS]: a steady client of the echo servers
(jobs/echo_server.c, jobs/epoll_echo_server.c). Sends N lines "NAME i" to ADDR:PORT,
20 ms apart (pacing, so that migrations land mid-conversation), and checks each echo
"echo NAME i" before the next line. Prints "N echoes in order", or what went wrong
("reset after i echoes" for a reset, "bad echo for i: ..."), and exits 1 then.
PROGRESS, if given, is a file that gets "at echo K" after every 25 echoes: a test
waits for such a line to pick a moment mid-conversation (never a sleep)."""
import socket
import sys
import time

addr, port, n, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
progress = open(sys.argv[5], "a") if len(sys.argv) > 5 else None
s = socket.create_connection((addr, port), timeout=30)
f = s.makefile("rw")
for i in range(n):
    try:
        f.write("%s %d\n" % (name, i))
        f.flush()
        got = f.readline()
    except ConnectionResetError:
        print("reset after %d echoes" % i)
        sys.exit(1)
    if got != "echo %s %d\n" % (name, i):
        print("bad echo for %d: %r" % (i, got))
        sys.exit(1)
    if progress and (i + 1) % 25 == 0:
        progress.write("at echo %d\n" % (i + 1))
        progress.flush()
    time.sleep(0.02)
s.close()
print("%d echoes in order" % n)
