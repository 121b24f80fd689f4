# slurm_job.py: the batch job of slurm.sh. Prints "sum K ..." and "STEP K" for K = 1..3,
# each after a fixed computation, then computes on until the file GO exists, then
# STEP 4..6 and "done", and exits 3 (so that Slurm's ExitCode shows the job's own
# status came through). What it prints depends on nothing but the computations.
# usage: python3 slurm_job.py GO
import os
import sys


def step(n):
    x = n * 2654435761 + 1
    for _ in range(200000):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    print(f"sum {n} {x:016x}", flush=True)
    print(f"STEP {n}", flush=True)


go = sys.argv[1]
for n in range(1, 4):
    step(n)
while not os.path.exists(go):
    sum(range(20000))  # work between looks: a CPU-bound job, not a stat loop
for n in range(4, 7):
    step(n)
print("done", flush=True)
sys.exit(3)
