#!/usr/bin/env python3
"""sink.py ADDR PORT: a one-connection TCP sink for jobs/stream_client.c. Listens on
ADDR:PORT (PORT 0: a free one) and prints "listening PORT" once it does; reads the
one connection to its end and answers "BYTES bytes sha256 HEX"."""
import hashlib
import socket
import sys

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(60)
print("listening", s.getsockname()[1], flush=True)
c, _ = s.accept()
c.settimeout(60)
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    h.update(d)
    n += len(d)
c.sendall(("%d bytes sha256 %s\n" % (n, h.hexdigest())).encode())
