# py_multiprocessing.py: a python3 `multiprocessing` job (a real library nobody here
# wrote), run as `python3 -c 'exec(open("py_multiprocessing.py").read())' STEPS`:
# two worker processes (fork) take numbers from a Queue, add them to a shared Value
# under a Lock and send their squares back on another Queue. The Queues are pipes
# plus semaphores, the Lock is a semaphore and the Value lives in multiprocessing's
# heap: all in memory shared between the processes (deleted /dev/shm files), so a
# checkpoint of the tree must bring each back as one object for all three. The root
# prints "STEP n" after each round and the totals at the end.
import hashlib, multiprocessing as mp, sys, time

from feature_hold import feature_hold  # on sys.path: meson.build


def worker(k, inq, outq, lock, total):
    while True:
        item = inq.get()
        if item is None:
            break
        with lock:
            total.value += item
        outq.put((k, item, item * item))


if __name__ == "__main__" or True:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    mp.set_start_method("fork", force=True)
    inq, outq = mp.Queue(), mp.Queue()
    lock = mp.Lock()
    total = mp.Value("q", 0, lock=False)
    workers = [mp.Process(target=worker, args=(k, inq, outq, lock, total)) for k in range(2)]
    for w in workers:
        w.start()
    h = hashlib.sha256()
    want = 0
    for step in range(1, steps + 1):
        items = [step * 10 + i for i in range(4)]
        for i in items:
            inq.put(i)
        time.sleep(0.05)  # the workers take them meanwhile, or wait for the lock
        got = sorted(outq.get(timeout=60)[1:] for _ in items)
        want += sum(items)
        if got != [(i, i * i) for i in items]:
            sys.exit(f"step {step}: results {got}")
        h.update(repr(got).encode())
        with lock:
            if total.value != want:
                sys.exit(f"step {step}: total {total.value}, want {want}")
        print(f"STEP {step}", flush=True)
        feature_hold(step)
    for w in workers:
        inq.put(None)
    for w in workers:
        w.join(60)
        if w.exitcode != 0:
            sys.exit(f"a worker ended with {w.exitcode}")
    print(f"{steps} steps, 2 workers: total {total.value}, results {h.hexdigest()[:16]}")
    print("PASS")
