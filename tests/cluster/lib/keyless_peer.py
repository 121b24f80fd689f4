#!/usr/bin/env python3
"""keyless_peer.py HOST PORT: a peer without the cluster key that speaks the link
handshake as far as it can (shadow/secure_stream.h): a well-formed hello with a
random public key, then a `finished` record of the right size made of random bytes
(no key, no way to make a real one). Prints "hello from the server: VERSION MODE",
then "closed by the server" once the server drops it, or "still open" after 10 s."""
import os
import socket
import struct
import sys

s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"mig-link" + bytes([1, 0]) + os.urandom(32))
hello = b""
while len(hello) < 42:
    d = s.recv(42 - len(hello))
    if not d:
        break
    hello += d
if len(hello) == 42 and hello[:8] == b"mig-link":
    print("hello from the server: version %d mode %d" % (hello[8], hello[9]), flush=True)
else:
    print("no hello from the server: %r" % hello, flush=True)
try:
    s.sendall(struct.pack("<I", 32) + os.urandom(32 + 16))
    while True:
        d = s.recv(1 << 16)  # the server's own `finished`, then the end
        if not d:
            print("closed by the server", flush=True)
            break
except socket.timeout:
    print("still open", flush=True)
except OSError as e:
    print("closed by the server (%s)" % e.strerror, flush=True)
