#!/usr/bin/env python3
"""A peer without the cluster key, as an attacker would be (prelogin_limits.sh).

  prelogin_client.py flood HOST PORT N
      N connections, each sending the frame of one Cap'n Proto message that claims
      64 MiB and then up to 64 MiB of it, never logging in. Prints one line per
      connection, "conn I sent BYTES closed|open", then "holding" and keeps the open
      ones until stdin closes (or it is killed).
  prelogin_client.py idle HOST PORT N LIMIT WAIT_S
      N connections that send nothing. Prints "at-once CLOSED OPEN" once N - LIMIT of
      them were closed by the server (or 10 s passed), then "later CLOSED OPEN" once
      all were closed (or WAIT_S passed).
Every wait is bounded.
"""
import errno
import select
import socket
import struct
import sys
import time

CLAIM_WORDS = 8 * 1024 * 1024 - 1  # just under capnp's default traversal limit (64 MiB)


def flood(host, port, n):
    conns = []
    for i in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.setblocking(False)
        # Segment table: 1 segment (count - 1 = 0), of CLAIM_WORDS words.
        header = struct.pack("<II", 0, CLAIM_WORDS)
        conns.append({"s": s, "left": CLAIM_WORDS * 8, "sent": 0, "head": header, "closed": False})
    chunk = bytes(1 << 16)
    deadline = time.monotonic() + 60
    # Send on every connection until each is complete, closed by the server, or the
    # server stopped reading for 5 s.
    last_progress = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last_progress < 5:
        busy = [c for c in conns if not c["closed"] and (c["head"] or c["left"] > 0)]
        if not busy:
            break
        _, writable, _ = select.select([], [c["s"] for c in busy], [], 1)
        for c in busy:
            if c["s"] not in writable:
                continue
            try:
                if c["head"]:
                    k = c["s"].send(c["head"])
                    c["head"] = c["head"][k:]
                else:
                    k = c["s"].send(chunk[: min(len(chunk), c["left"] - 1 if c["left"] > 1 else 1)])
                    c["left"] -= k
                    c["sent"] += k
                    if c["left"] <= 1:
                        c["left"] = 0  # one byte short of the message: the server waits for it
                last_progress = time.monotonic()
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    continue
                c["closed"] = True
    for c in conns:
        if not c["closed"]:
            # A server that closed while we were not writing: readable, EOF or reset.
            r, _, _ = select.select([c["s"]], [], [], 0)
            if r:
                try:
                    c["closed"] = c["s"].recv(1) == b""
                except OSError:
                    c["closed"] = True
    for i, c in enumerate(conns):
        print("conn %d sent %d %s" % (i, c["sent"], "closed" if c["closed"] else "open"), flush=True)
    print("holding", flush=True)
    select.select([sys.stdin], [], [], 600)


def idle(host, port, n, limit, wait_s):
    conns = [socket.create_connection((host, port), timeout=10) for _ in range(n)]
    closed = set()

    def poll(until, want):
        while time.monotonic() < until and len(closed) < want:
            open_ = [s for s in conns if s not in closed]
            r, _, _ = select.select(open_, [], [], 0.2)
            for s in r:
                try:
                    if s.recv(1) == b"":
                        closed.add(s)
                except OSError:
                    closed.add(s)

    poll(time.monotonic() + 10, n - limit)
    print("at-once %d %d" % (len(closed), n - len(closed)), flush=True)
    poll(time.monotonic() + wait_s, n)
    print("later %d %d" % (len(closed), n - len(closed)), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "flood":
        flood(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "idle":
        idle(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
    else:
        sys.exit("usage: see the header")
