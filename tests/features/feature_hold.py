# feature_hold.py: the Python programs' side of MIG_FEATURE_HOLD, as feature.h's
# feature_hold is the C programs'. One copy for py_compute.py, py_multiprocessing.py
# (meson.build puts this folder on their sys.path: they are exec'd from `python3 -c`,
# which has no script folder) and tests/cluster/jobs/sqlite_writer.py.
import os, sys, time


def feature_hold(step):
    """MIG_FEATURE_HOLD=K:PATH[,K:PATH...] (run_feature.sh, sqlite.sh): after STEP K,
    wait until PATH exists (the test has checkpointed or moved us), at most 600 s."""
    for hold in filter(None, os.environ.get("MIG_FEATURE_HOLD", "").split(",")):
        k, _, path = hold.partition(":")
        if k != str(step) or not path:
            continue
        for _ in range(60000):
            if os.path.exists(path):
                break
            time.sleep(0.01)
        else:
            sys.exit(f"MIG_FEATURE_HOLD: {path} did not appear within 600 s")
