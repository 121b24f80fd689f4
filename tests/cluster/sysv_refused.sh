#!/bin/bash
# sysv_refused.sh: a job using System V IPC objects (jobs/sysv_job.c: a semaphore set
# and a message queue it made) is not moved: `migctl migrate` on a refuses before
# anything is frozen, with one line naming the object (the objects stay with a's
# kernel; resources/sysv_ipc.h), the job stays on a and finishes there as an
# undisturbed run does. Never a move reported as a success after which its semop or
# msgsnd would fail.
#
# usage: sysv_refused.sh OPTIONS (cluster_lib.sh's; the job as --feature sysv PROG);
# meson runs it as test 'migration-sysv-refused' (suite cluster).
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features sysv
cluster_up a b

start_job ref plain "${FEATURE[sysv]}" 20
start_job sysv mig "${FEATURE[sysv]}" 20
if wait_step sysv 3 30; then
  migrate sysv b
  if one_line_reason && grep -q "System V semaphore set (IPC_PRIVATE, id [0-9]*)" "$MIG_ERR" &&
     job_at_home sysv "$(readlink -f "${FEATURE[sysv]}")" && [[ $(host_of "$(where sysv)") == a ]]; then
    ok "sysv: migrate refused with one line, the job still runs on a: $(cat "$MIG_ERR")"
  else
    fail "sysv: migctl exited $MIG_RC; want one line naming the semaphore set and the job still on a"
    detail "$MIG_ERR" "migctl stderr"
    detail "$MIG_OUT" "migctl stdout"
  fi
  wait_job ref 60
  compare sysv ref 0
else
  fail "sysv: no STEP 3 on a within 30 s"
  detail "$(jfile sysv err)" "its stderr"
fi
cluster_end
