#!/usr/bin/env python3
"""recorder.py PORT OUT: a one-connection TCP server on 127.0.0.1:PORT for
jobs/marker_job.c (link_encryption.sh). Prints "listening PORT" once it listens,
writes every byte the connection brings to OUT, and exits at its end. Gives up
(exit 1) after 120 s without a connection or without data."""
import socket
import sys

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
s.settimeout(120)
print("listening", s.getsockname()[1], flush=True)
c, _ = s.accept()
c.settimeout(120)
with open(sys.argv[2], "wb") as out:
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        out.write(d)
        out.flush()
print("closed", flush=True)
