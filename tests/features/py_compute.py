# py_compute.py: the Python computation of the feature suite, run as
# `python3 -c 'exec(open("py_compute.py").read())' STEPS` (see meson.build):
# an interpreter nobody here wrote, checkpointed mid-run. Each step extends
# a list of primes, a dict, a running SHA-256, a big integer and a float sum,
# prints "STEP n" and sleeps; the end prints the results (deterministic: no
# hashing of str keys).
import hashlib, math, sys, time

from feature_hold import feature_hold  # on sys.path: meson.build

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
primes = [2]
table = {}
h = hashlib.sha256()
big = 1
fsum = 0.0
n = 3
for step in range(1, steps + 1):
    limit = step * 15000
    while n < limit:
        r = math.isqrt(n)
        for p in primes:
            if p > r:
                primes.append(n)
                break
            if n % p == 0:
                break
        n += 2
    table[step] = sum(primes[-50:])
    h.update(repr(primes[-10:]).encode())
    big = big * (primes[-1] + step) % (1 << 4096) + step
    fsum += math.sin(step) / step
    print("STEP", step, flush=True)
    feature_hold(step)
    time.sleep(0.05)
print("primes", len(primes), "last", primes[-1])
print("table", sum(table.values()), len(table))
print("sha256", h.hexdigest())
print("big", hex(big % (1 << 64)), big.bit_length())
print("fsum", repr(fsum))
print("PASS")
