#!/bin/bash
# shared_objects.sh: what a job shares moves with it (issue 12; resources/sysv_ipc.h,
# resources/shared_memory.h, docs/kinds/sysv_ipc.md and shared_memory.md), as a user
# sees it.
# 1. jobs/sysv_job.c (one process: a semaphore set, a message queue and a segment with
#    a running sum, all by id) while another process on a is attached to its segment:
#    `migctl migrate` refuses before anything is frozen, one line naming the segment
#    and that process, and the job runs on at home. Once that process has ended, a
#    move to b while b has an object with the id of the job's queue is refused by b
#    before anything is frozen, one line naming the id, the job running on at home. Once that object is removed the job
#    moves a -> b -> c -> a and finishes with the output and status of an undisturbed
#    run; after a -> b none of its objects is left on a, back on a they are there again
#    (made by its deputy's process, which it is again).
# 2. tests/features/tree_sysv.c (a tree of 3 sharing a keyed semaphore set, a private
#    queue with a backlog of typed messages, a keyed segment and one removed while
#    attached, checking contents, values, order and that the segment has 3
#    attachments every round) moves a -> b -> c whole and finishes as undisturbed.
# 3. tests/features/tree_shm.c (a tree of 3 sharing a process-shared mutex and a
#    counter in shared anonymous memory, named semaphores unlinked at once that the
#    children wait on and the root posts, a shm_open object unlinked after mmap) moves
#    a -> b -> c whole and finishes as undisturbed: each object is one object again on
#    each host, and nothing of it is left on b after b -> c.
#
# usage: shared_objects.sh OPTIONS (cluster_lib.sh's; the jobs as --feature sysv PROG,
# --feature tree_sysv PROG, --feature tree_shm PROG); meson runs it as test
# 'migration-shared-objects' (suite cluster).
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features sysv tree_sysv tree_shm
PY=/usr/bin/python3
[[ -x $PY ]] || { echo "SKIP: $PY is not installed"; exit 77; }
cluster_up a b c

start_job ref plain "${FEATURE[sysv]}" 60
start_job tree-ref plain "${FEATURE[tree_sysv]}"
start_job shm-ref plain "${FEATURE[tree_shm]}"
start_job sysv mig "${FEATURE[sysv]}" 60
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
  # b has an object with the id of the job's queue: b refuses the job before anything
  # is frozen, the job runs on at home.
  msq=$(hx a awk -v p="${PID[sysv]}" '$6 == p || $7 == p { print $2 }' /proc/sysvipc/msg)
  hx b "$PY" -c 'import ctypes, sys
open("/proc/sys/kernel/msg_next_id", "w").write(sys.argv[1])
sys.exit(0 if ctypes.CDLL(None).msgget(0, 0o1600) == int(sys.argv[1]) else 1)' "$msq" || fail "sysv: could not take id '$msq' on b"
  migrate sysv b
  if one_line_reason && grep -q "the id of the job's System V message queue (IPC_PRIVATE, id $msq) is taken on this host (${ADDR[b]}:$PORT); remove that object" "$MIG_ERR" &&
     job_at_home sysv "$(readlink -f "${FEATURE[sysv]}")" && wait_step sysv $(( $(last_step sysv) + 2 )) 30; then
    ok "sysv: b has an object with its queue's id: refused in one line before the freeze, the job runs on at home: $(sed 's/.*failed: //' "$MIG_ERR" | cut -c1-150)..."
  else
    fail "sysv: with id $msq taken on b: migctl exited $MIG_RC; want one line naming the id, the job running on at home"
    detail "$MIG_ERR" "migctl stderr"; restore_log b
  fi
  hx b ipcrm -q "$msq" || fail "sysv: could not remove queue $msq on b"
  if hop sysv a b; then
    # (Columns differ per file: a segment's creator and last user are $5 and $6, a
    # queue's last sender and receiver $6 and $7; a semaphore set names no process.)
    left=$(hx a awk -v p="${PID[sysv]}" 'NR > 1 && ($5 == p || $6 == p)' /proc/sysvipc/shm 2>/dev/null
           hx a awk -v p="${PID[sysv]}" 'NR > 1 && ($6 == p || $7 == p)' /proc/sysvipc/msg 2>/dev/null)
    ids=$(hx a awk 'NR > 1 { print $2 }' /proc/sysvipc/shm /proc/sysvipc/sem /proc/sysvipc/msg | grep -cx "$shm")
    if [[ -z $left && $ids == 0 ]]; then
      ok "sysv: after a -> b none of its System V objects is left on a"
    else
      fail "sysv: after a -> b objects left on a: '$left' (segment $shm listed $ids times)"
    fi
    grep -q "System V objects move with it" "$MIG_OUT" || fail "sysv: no line saying why the hop was stop-and-copy"
    # Home again: the job goes back into its deputy's process, its objects made again on a.
    if hop sysv b c && hop sysv c a; then
      # (A restored process's exe is the restorer: its command line says what it is.)
      if [[ $(hx a readlink "/proc/${PID[sysv]}/exe") != *mig-deputy* ]] &&
         [[ $(hx a cat "/proc/${PID[sysv]}/cmdline" | tr '\0' ' ') == "${FEATURE[sysv]} 60 " ]] &&
         [[ $(hx a awk -v p="${PID[sysv]}" 'NR > 1 && $5 == p { print $2 }' /proc/sysvipc/shm) == "$shm" ]]; then
        ok "sysv: back home the job is its own process again, with its segment (id $shm) on a"
      else
        fail "sysv: back home: exe $(hx a readlink "/proc/${PID[sysv]}/exe"), command '$(hx a cat "/proc/${PID[sysv]}/cmdline" | tr '\0' ' ')', segments on a: $(hx a cat /proc/sysvipc/shm | tr '\n' '|')"
      fi
    fi
  fi
else
  fail "sysv: no STEP 2 on a within 30 s"; detail "$(jfile sysv err)" "its stderr"
fi
wait_job ref 60
compare sysv ref 0

# The tree jobs are quick (30 rounds of about 50 ms): each holds at its hops' steps
# until the hop is done, so a loaded machine cannot let it end first.
held_hops() {  # held_hops NAME: a -> b at STEP 5, b -> c at STEP 10, the job let go after each
  local go=$(jfile "$1" data)
  local r=1
  hop "$1" a b 5 && { touch "$go/go1"; hop "$1" b c 10; } && r=0
  touch "$go/go1" "$go/go2"
  return $r
}
start_job tree mig env "MIG_FEATURE_HOLD=5:@DIR@/go1,10:@DIR@/go2" "${FEATURE[tree_sysv]}"
held_hops tree
wait_job tree-ref 60
compare tree tree-ref 0

start_job shm mig env "MIG_FEATURE_HOLD=5:@DIR@/go1,10:@DIR@/go2" "${FEATURE[tree_shm]}"
procs_before=$(others_on b)
if held_hops shm; then
  # The holder on b ends (removing its links) once the root there has ended.
  gone() { [[ -z $(comm -13 <(sort <<<"$procs_before") <(others_on b | sort)) ]] &&
           [[ $(hx b sh -c 'ls /dev/shm | grep -c "^mig-tree-"') == 0 ]]; }
  wait_until 10 gone
  left=$(comm -13 <(sort <<<"$procs_before") <(others_on b | sort) | tr '\n' ';')
  links=$(hx b sh -c 'ls /dev/shm | grep -c "^mig-tree-"')
  if [[ -z $left && $links == 0 ]]; then
    ok "shm: nothing of the tree left on b after b -> c (no process, no holder, no /dev/shm link)"
  else
    fail "shm: left on b after b -> c: processes '$left', $links /dev/shm links"
  fi
fi
wait_job shm-ref 60
compare shm shm-ref 0
kill_job sysv; kill_job tree; kill_job shm
cluster_end
