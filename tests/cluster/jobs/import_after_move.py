# import_after_move.py DATA_DIR [LIBDIFF]: a Python job that loads code and maps data
# only once it has moved (tests/cluster/code_after_move.sh). It prints "STEP n" on
# stdout until DATA_DIR/go exists (the test makes it after the migration), then, for
# the first time in this process, imports sqlite3, json (its C scanner), decimal,
# ctypes, bz2 and lzma (each a C extension that dlopen maps from /usr), uses each, maps
# DATA_DIR/data.bin (read-only shared, and private with a write that must not reach the
# file), loads LIBDIFF with ctypes if given (a library whose copy on the job's host
# differs from home's: home's must be loaded, which has cos()), and writes what it got
# to DATA_DIR/result.txt, its own memory map to DATA_DIR/maps.txt and what a write
# through a writable shared mapping of DATA_DIR/shared.bin left in that file (read back
# with read()) to DATA_DIR/shared_write.txt. A python3 child it runs
# then imports sqlite3 and json and makes a temporary file in /tmp; gcc builds and
# links a program in DATA_DIR (ld loads its LTO plugin).
import fcntl
import os
import sys
import time

data = sys.argv[1]
libdiff = sys.argv[2] if len(sys.argv) > 2 else None
step = 0
while not os.path.exists(os.path.join(data, "go")):
    step += 1
    print("STEP %d" % step, flush=True)
    time.sleep(0.05)

out = []
for name in ("sqlite3", "json", "decimal", "ctypes", "bz2", "lzma", "mmap"):
    out.append("%s already loaded: %s" % (name, name in sys.modules))

import sqlite3
con = sqlite3.connect(":memory:")
con.execute("create table t (k integer primary key, v text)")
con.executemany("insert into t (v) values (?)", [("row %d" % i,) for i in range(100)])
out.append("sqlite3 %s: %s" % (sqlite3.sqlite_version_info[0], con.execute("select count(*), max(v) from t").fetchone()))

import json
import json.decoder
import json.scanner
out.append("json C scanner: %s %s" % (json.decoder.c_scanstring is not None, json.scanner.c_make_scanner is not None))
out.append("json: %s" % json.loads('{"a": [1, 2.5, "x\\u00e9"], "b": null}'))

import decimal
decimal.getcontext().prec = 40
out.append("decimal: %s, C module: %s" % (decimal.Decimal(1) / decimal.Decimal(7), "_decimal" in sys.modules))

import ctypes
libm = ctypes.CDLL("libm.so.6")
libm.sqrt.restype = ctypes.c_double
libm.sqrt.argtypes = [ctypes.c_double]
out.append("ctypes: sqrt(16) = %s" % libm.sqrt(16.0))

import bz2
blob = b"mig moves running processes " * 200
out.append("bz2: %d -> %d, round trip %s" % (len(blob), len(bz2.compress(blob)), bz2.decompress(bz2.compress(blob)) == blob))

import lzma
out.append("lzma: round trip %s" % (lzma.decompress(lzma.compress(blob)) == blob))

import mmap
path = os.path.join(data, "data.bin")
with open(path, "rb") as f:
    ro = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    out.append("mapped read-only: %d bytes, first %r, last %r" % (len(ro), ro[:16], ro[-16:]))
    cp = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    cp[0:8] = b"PRIVATE!"
    out.append("mapped private, written: %r, read-only mapping still %r" % (cp[:16], ro[:16]))
    ro.close()
    cp.close()
with open(path, "rb") as f:
    out.append("file after: first %r" % f.read(16))
try:
    shared_path = os.path.join(data, "shared.bin")
    with open(shared_path, "w+b") as f:
        f.truncate(4096)
        # Shared through locks (as sqlite's WAL index): mapped once it holds one.
        fcntl.lockf(f, fcntl.LOCK_EX)
        rw = mmap.mmap(f.fileno(), 4096, access=mmap.ACCESS_WRITE)
        rw[100:116] = b"through the map!"
        rw.flush()  # msync: what was written through the mapping is in the file
        rw.close()
        fcntl.lockf(f, fcntl.LOCK_UN)
    with open(shared_path, "rb") as f:
        f.seek(100)
        shared = "mapped, the file has %r" % f.read(16)
except OSError as e:
    shared = "refused: %s" % os.strerror(e.errno)
with open(os.path.join(data, "shared_write.txt"), "w") as f:
    f.write(shared + "\n")

# A program exec'd on the job's new host loads its libraries there too, and its
# temporary files go to /tmp at home (scratch is home's by default).
import subprocess
child = subprocess.run([sys.executable, "-c",
                        "import sqlite3, json.decoder, tempfile, os\n"
                        "fd, p = tempfile.mkstemp(dir='/tmp')\n"
                        "os.write(fd, b'scratch')\n"
                        "os.close(fd)\n"
                        "print(sqlite3.connect(':memory:').execute('select 6*7').fetchone()[0],"
                        " json.decoder.c_scanstring is not None, open(p).read())\n"
                        "os.unlink(p)"],
                       capture_output=True, text=True)
out.append("child: status %d, %s %r" % (child.returncode, child.stdout.strip(), child.stderr.strip()[-200:]))

# gcc's link step: Debian's gcc always has ld load its LTO plugin (liblto_plugin.so)
# with dlopen, so a build run by a moved job (make) links only if that works.
src = os.path.join(data, "hello.c")
with open(src, "w") as f:
    f.write('#include <stdio.h>\nint main(void) { puts("hello from gcc"); return 0; }\n')
exe = os.path.join(data, "hello")
cc = subprocess.run(["gcc", "-O1", "-o", exe, src], capture_output=True, text=True)
with open(exe, "rb") as f:
    elf = f.read(4) == b"\x7fELF"
out.append("gcc: status %d, %r, an ELF program: %s" % (cc.returncode, cc.stderr.strip()[-200:], elf))

if libdiff:
    lib = ctypes.CDLL(libdiff)
    out.append("libdiff has cos: %s" % hasattr(lib, "cos"))

with open("/proc/self/maps") as f:
    maps = f.read()
with open(os.path.join(data, "maps.txt"), "w") as f:
    f.write(maps)
with open(os.path.join(data, "result.txt"), "w") as f:
    f.write("\n".join(out) + "\n")
print("DONE", flush=True)
