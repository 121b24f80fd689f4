#!/bin/bash
# sysv_move.sh: System V IPC objects move with the job that uses them (issue 12;
# resources/sysv_ipc.h, docs/kinds/sysv_ipc.md), as a user sees it.
# 1. jobs/sysv_job.c (one process: a semaphore set, a message queue and a segment with
#    a running sum, all by id) while another process on a is attached to its segment:
#    `migctl migrate` refuses before anything is frozen, one line naming the segment
#    and saying why, and the job runs on at home. Once that process has ended the job
#    moves a -> b -> c and finishes with the output and status of an undisturbed run;
#    after a -> b none of its objects is left on a (the ids it had are free there).
# 2. tests/features/tree_sysv.c (a tree of 3 sharing a keyed semaphore set, a private
#    queue with a backlog of typed messages, a keyed segment and one removed while
#    attached, checking contents, values, order and that the segment has 3
#    attachments every round) moves a -> b -> c whole and finishes as undisturbed.
#
# usage: sysv_move.sh OPTIONS (cluster_lib.sh's; the jobs as --feature sysv PROG and
# --feature tree_sysv PROG); meson runs it as test 'migration-sysv' (suite cluster).
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features sysv tree_sysv
PY=/usr/bin/python3
[[ -x $PY ]] || { echo "SKIP: $PY is not installed"; exit 77; }
cluster_up a b c

start_job ref plain "${FEATURE[sysv]}" 40
start_job tree-ref plain "${FEATURE[tree_sysv]}"
start_job sysv mig "${FEATURE[sysv]}" 40
# Another process on a attaches the job's segment (read-only) and stays.
ATTACH='import ctypes, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
at = libc.shmat(int(sys.argv[1]), None, 0o10000)
print("attached" if at not in (None, 2**64 - 1) else "shmat failed", flush=True)
signal.pause()'
if wait_step sysv 2 30; then
  shm=$(hx a awk -v p="${PID[sysv]}" '$5 == p { print $2 }' /proc/sysvipc/shm)
  start_job attacher plain "$PY" -c "$ATTACH" "$shm"
  wait_until 20 grep -qx attached "$(jfile attacher out)" || fail "the attacher did not attach segment '$shm'"
  migrate sysv b
  if one_line_reason && grep -q "it uses the System V shared memory segment (IPC_PRIVATE, id $shm), which process ${PID[attacher]} (python3) outside the job uses too" "$MIG_ERR" &&
     grep -q "nothing was frozen, the job runs on at home" "$MIG_ERR" &&
     job_at_home sysv "$(readlink -f "${FEATURE[sysv]}")"; then
    ok "sysv: its segment attached by another process: refused in one line, runs on at home: $(sed 's/.*failed: //' "$MIG_ERR" | cut -c1-150)..."
  else
    fail "sysv: migctl exited $MIG_RC; want one line naming segment $shm and the outside attachment, the job on a"
    detail "$MIG_ERR" "migctl stderr"
  fi
  kill_job attacher
  wait_job attacher 20
  if hop sysv a b; then
    left=$(hx a awk -v p="${PID[sysv]}" 'NR > 1 && ($5 == p || $6 == p)' /proc/sysvipc/shm /proc/sysvipc/sem /proc/sysvipc/msg 2>/dev/null)
    ids=$(hx a awk 'NR > 1 { print $2 }' /proc/sysvipc/shm /proc/sysvipc/sem /proc/sysvipc/msg | grep -cx "$shm")
    if [[ -z $left && $ids == 0 ]]; then
      ok "sysv: after a -> b none of its System V objects is left on a"
    else
      fail "sysv: after a -> b objects left on a: '$left' (segment $shm listed $ids times)"
    fi
    grep -q "System V objects move with it" "$MIG_OUT" || fail "sysv: no line saying why the hop was stop-and-copy"
    hop sysv b c
  fi
else
  fail "sysv: no STEP 2 on a within 30 s"; detail "$(jfile sysv err)" "its stderr"
fi
wait_job ref 60
compare sysv ref 0

start_job tree mig "${FEATURE[tree_sysv]}"
hop tree a b && hop tree b c
wait_job tree-ref 60
compare tree tree-ref 0
kill_job sysv; kill_job tree
cluster_end
