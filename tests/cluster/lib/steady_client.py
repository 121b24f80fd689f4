#!/usr/bin/env python3
"""steady_client.py: the client of the readiness checks. Talks to an echo server
(echo_server, epoll_echo_server) the way a client of a live service does while the
server is migrated: it sends N numbered lines "NAME i" at a steady rate (one every
INTERVAL_MS, default 20, on a schedule that does not wait for the echoes) from one
thread while the main thread reads the echoes, and checks that they are exactly
"echo NAME i", in order. It never hangs: 30 s without a new echo (or a send blocked
that long) is a failure.

Prints "N echoes in order" and exits 0, or prints one line starting "FAIL" saying
what went wrong (after how many echoes; "reset" for ECONNRESET, "closed" for an
early EOF, "timeout" when nothing came for 30 s, "bad echo" with what came instead)
and exits 1.

usage: steady_client.py HOST PORT N [INTERVAL_MS] [NAME]
"""
import os
import socket
import sys
import threading
import time

STALL_S = 30.0


def fail(msg):
    print("FAIL %s" % msg, flush=True)
    os._exit(1)  # the sender thread may be blocked in a send


def describe(e, what):
    if isinstance(e, ConnectionResetError):
        return "reset (ECONNRESET) while %s" % what
    if isinstance(e, BrokenPipeError):
        return "broken pipe (EPIPE) while %s" % what
    if isinstance(e, socket.timeout):
        return "timeout: %s blocked %.0f s" % (what, STALL_S)
    return "%s while %s" % (e, what)


def main():
    if len(sys.argv) < 4 or len(sys.argv) > 6:
        print("usage: steady_client.py HOST PORT N [INTERVAL_MS] [NAME]", file=sys.stderr)
        sys.exit(2)
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    interval = (int(sys.argv[4]) if len(sys.argv) > 4 else 20) / 1000.0
    name = sys.argv[5] if len(sys.argv) > 5 else "line"
    try:
        s = socket.create_connection((host, port), timeout=STALL_S)
    except OSError as e:
        fail(describe(e, "connecting to %s:%d" % (host, port)))
    s.settimeout(STALL_S)  # a send blocked this long fails (recv has its own clock below)
    sent = [0]

    def sender():
        start = time.monotonic()
        for i in range(n):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                s.sendall(("%s %d\n" % (name, i)).encode())
            except OSError as e:
                fail(describe(e, "sending line %d (%d echoes had come)" % (i, got)))
            sent[0] = i + 1

    got = 0
    threading.Thread(target=sender, daemon=True).start()
    buf = b""
    last = time.monotonic()
    r = s.dup()  # the reader's own timeout: recv wakes every second to check the stall clock
    r.settimeout(1.0)
    while got < n:
        try:
            data = r.recv(65536)
        except socket.timeout:
            if time.monotonic() - last > STALL_S:
                fail("timeout: no echo for %.0f s after %d echoes (%d lines sent)" % (STALL_S, got, sent[0]))
            continue
        except OSError as e:
            fail(describe(e, "reading echo %d (%d lines sent)" % (got, sent[0])))
        if not data:
            fail("closed: the server closed the connection after %d echoes (%d lines sent)" % (got, sent[0]))
        last = time.monotonic()
        buf += data
        while b"\n" in buf and got < n:
            line, buf = buf.split(b"\n", 1)
            want = "echo %s %d" % (name, got)
            if line != want.encode():
                fail("bad echo %d: want %r, got %r" % (got, want, line.decode(errors="replace")))
            got += 1
    if buf:
        fail("bad echo: %r after the %d echoes" % (buf.decode(errors="replace"), n))
    r.close()
    s.close()
    print("%d echoes in order" % n, flush=True)


main()
