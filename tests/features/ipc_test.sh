#!/bin/bash
# System V objects at a restart, as a user meets them (docs/kinds/sysv_ipc.md):
#  - a tree using System V objects (tree_sysv) is checkpointed, left running, and then
#    killed: its objects stay in the kernel, with the key and ids the image has;
#  - the restart is refused in one line naming the taken key, before any member ran
#    (nothing printed by the job), and the objects that hold the key are left alone;
#  - once they are removed (ipcrm), the same image restarts and finishes as an
#    undisturbed run does.
# Args: MIGCTL LIBMIG TREE_SYSV
set -u
migctl=$1 libmig=$2 prog=$3
if [ "$(id -u)" != 0 ]; then echo "SKIP: a tree's restart needs root"; exit 77; fi
source "$(dirname "$0")/../lib/check.sh"
check_setup ipc
bad_lines=40
cleanup_ipc() {
  [ -n "${key:-}" ] && { ipcrm -S "$key" 2>/dev/null; ipcrm -M "$key" 2>/dev/null; }
  for q in ${queues:-}; do ipcrm -q "$q" 2>/dev/null; done
}
check_at_exit() { cleanup_ipc; }

"$prog" > "$dir/ref.out" 2>&1 || bad "the undisturbed run failed" "$dir/ref.out"
# Its output goes through a pipe read by a cat of this script's (not the job's child),
# so that the restarted job writes to the restart's output, not into this file.
exec 4> >(cat > "$dir/job.out")
LD_PRELOAD=$libmig "$prog" >&4 2> "$dir/job.err" 4>&- &
job=$!; pids+=($job)
exec 4>&-
wait_for "STEP 3" grep -qx "STEP 3" "$dir/job.out"
kids=$(cat /proc/$job/task/*/children 2>/dev/null)
pids+=($kids)
key=$(printf '0x%08x' $(( (0x6d690000 | (job & 0xffff)) & 0x7fffffff )))
queues=$(ipcs -q -p | awk -v p="$job" '$3 == p || $4 == p { print $1 }')
"$migctl" checkpoint "$job" -o "$dir/tree.img" > "$dir/ckpt.log" 2>&1; rc=$?
kill -9 "$job" $kids 2>/dev/null
wait "$job" 2>/dev/null
for k in $kids; do wait_for "process $k to be gone" eval "! kill -0 $k 2>/dev/null"; done
if [ $rc -eq 0 ] && grep -q "its tree (3 processes" "$dir/ckpt.log"; then
  ok "a tree using System V objects is checkpointed (and then killed: its objects stay)"
else bad "checkpoint of the tree (exit $rc)" "$dir/ckpt.log"; fi

timeout 60 "$migctl" restart "$dir/tree.img" > "$dir/refused.out" 2> "$dir/refused.err" </dev/null; rc=$?
if [ $rc -ne 0 ] && [ "$(wc -l < "$dir/refused.err")" -eq 1 ] && grep -q "the key of the job's System V .* with key $key (id [0-9]*) is taken on this host now" "$dir/refused.err" &&
   [ ! -s "$dir/refused.out" ] && ipcs -s | grep -q "^$key "; then
  ok "the restart is refused in one line naming the key, nothing ran, the holder's objects are left: $(cat "$dir/refused.err")"
else bad "restart with the key taken (exit $rc)" "$dir/refused.err" "$dir/refused.out"; fi

cleanup_ipc
timeout 120 "$migctl" restart "$dir/tree.img" > "$dir/restart.out" 2> "$dir/restart.err" </dev/null; rc=$?
if [ $rc -eq 0 ] && [ "$(tail -n 2 "$dir/restart.out")" = "$(tail -n 2 "$dir/ref.out")" ] && [ ! -s "$dir/restart.err" ]; then
  ok "once the objects are removed, the image restarts and ends as undisturbed: $(tail -n 2 "$dir/restart.out" | head -n 1)"
else bad "restart after ipcrm (exit $rc)" "$dir/restart.out" "$dir/restart.err"; fi
key=""; queues=""
[ $fails -eq 0 ]
