# mapped_before_move.py DATA_DIR MODE LIBSAME: a Python job that maps files before it
# moves (tests/cluster/code_after_move.sh): DATA_DIR/data.bin read-only shared and
# private (with a write that must not reach the file); DATA_DIR/libhome.so, a library
# only home has, and LIBSAME, a library under a system directory that the new host has
# too (the same file, with that host's inode), both loaded with ctypes; with MODE
# "shared-writable" also data.bin shared and writable, with a lock held on it, which
# moves as a copy kept coherent with the file at home. It prints "STEP n" until DATA_DIR/go exists, then writes what it
# reads through each mapping, and sqrt(16) from both libraries, to DATA_DIR/result.txt
# and its memory map to DATA_DIR/maps.txt.
import ctypes
import fcntl
import mmap
import os
import sys
import time

data = sys.argv[1]
rw = sys.argv[2] == "shared-writable"
f = open(os.path.join(data, "data.bin"), "r+b" if rw else "rb")
ro = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
cp = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
cp[0:8] = b"PRIVATE!"
if rw:
    fcntl.lockf(f, fcntl.LOCK_SH)  # shared through locks, as sqlite's WAL index
sw = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE) if rw else None
# MODE "shared-writable-no-fd": data.bin mapped shared and writable with mmap(2) itself,
# its fd closed at once (Python's mmap would keep a copy of the fd), and no lock held:
# nothing to keep it in step with the file from another host, so a migration must
# refuse it.
nofd = None
if sys.argv[2] == "shared-writable-no-fd":
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    fd = os.open(os.path.join(data, "data.bin"), os.O_RDWR)
    nofd = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    os.close(fd)
lib = ctypes.CDLL(os.path.join(data, "libhome.so"))
lib.sqrt.restype = ctypes.c_double
lib.sqrt.argtypes = [ctypes.c_double]
same = ctypes.CDLL(sys.argv[3])
same.sqrt.restype = ctypes.c_double
same.sqrt.argtypes = [ctypes.c_double]

step = 0
while not os.path.exists(os.path.join(data, "go")):
    step += 1
    print("STEP %d" % step, flush=True)
    time.sleep(0.05)

out = [
    "shared read-only: %d bytes, %r ... %r" % (len(ro), ro[:16], ro[-16:]),
    "private: %r ... %r" % (cp[:16], cp[-16:]),
    "libhome sqrt(16) = %s" % lib.sqrt(16.0),
    "libsame sqrt(16) = %s" % same.sqrt(16.0),
]
if sw is not None:
    out.append("shared writable: %r" % sw[:16])
if nofd is not None:
    out.append("shared writable, no fd: %r" % ctypes.string_at(nofd, 16))
with open("/proc/self/maps") as m, open(os.path.join(data, "maps.txt"), "w") as w:
    w.write(m.read())
with open(os.path.join(data, "result.txt"), "w") as r:
    r.write("\n".join(out) + "\n")
print("DONE", flush=True)
