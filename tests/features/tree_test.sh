#!/bin/bash
# Process trees checkpointed and restarted whole (issue 12), as a user meets them:
#  - a shell pipeline `gen | gzip | sha256sum` checkpointed (--stop) mid-way as one
#    tree and restarted: the hash it prints is the undisturbed run's;
#  - `migctl image info` lists the tree's members;
#  - a tree with a statically linked member is refused before anything is frozen,
#    with one line naming the member's PID and command; the job finishes normally.
# Args: MIGCTL LIBMIG GEN_DATA STATIC_MEMBER
set -u
migctl=$1 libmig=$2 gen=$3 static=$4
source "$(dirname "$0")/../lib/check.sh"
check_setup tree
bad_lines=40
rchar() { awk '/^rchar/ {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; }
child_named() {  # child_named ROOT NAME: PID of ROOT's child whose comm is NAME
  local p
  for p in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = "$2" ] && { echo "$p"; return 0; }
  done
  return 1
}

# --- the pipeline -------------------------------------------------------------
pipeline="'$gen' /dev/stdout 48M text | gzip -n -c | sha256sum"
sh -c "$pipeline" > "$dir/ref.out" 2>&1
# Its output goes through a pipe read by a cat of this script's (not the job's child).
exec 4> >(cat > "$dir/ckpt.out")
LD_PRELOAD=$libmig sh -c "$pipeline" >&4 2>"$dir/ckpt.err" 4>&- &
job=$!; pids+=($job)
exec 4>&-
gz=""
wait_for "gzip to start" eval 'gz=$(child_named $job gzip)'
pids+=($gz)
# Mid-way: gzip has read 16 MiB of the 48.
wait_for "gzip to read 16 MiB" eval '[ "$(rchar $gz)" -ge 16777216 ]'
"$migctl" checkpoint "$job" -o "$dir/pipe.img" --stop > "$dir/ckpt.log" 2>&1; rc=$?
wait "$job"; jrc=$?
if [ $rc -eq 0 ] && [ $jrc -eq 86 ] && grep -q "its tree (4 processes, 4 running)" "$dir/ckpt.log" && [ ! -s "$dir/ckpt.out" ]; then
  ok "a running pipeline is checkpointed as one tree of 4 (sh, gen, gzip, sha256sum) and stopped"
else bad "checkpoint of the pipeline (exit $rc, job $jrc)" "$dir/ckpt.log" "$dir/ckpt.err" "$dir/ckpt.out"; fi

"$migctl" image info "$dir/pipe.img" > "$dir/info.out" 2>&1
if grep -q "tree      4 processes" "$dir/info.out" && grep -q "pid $job, parent" "$dir/info.out" &&
   [ "$(grep -cE '^    pid [0-9]+, parent '"$job"', ' "$dir/info.out")" -eq 3 ]; then
  ok "image info lists the tree: the shell and its 3 children"
else bad "image info of a tree" "$dir/info.out"; fi

if [ "$(id -u)" = 0 ]; then
  exec 4> >(cat > "$dir/restart.out")
  timeout 120 "$migctl" restart "$dir/pipe.img" >&4 2>"$dir/restart.err" 4>&- </dev/null; rc=$?
  exec 4>&-
  wait_for "the restart's output" test -s "$dir/restart.out"
  if [ $rc -eq 0 ] && diff "$dir/ref.out" "$dir/restart.out" > "$dir/restart.diff" && [ ! -s "$dir/restart.err" ]; then
    ok "the restarted pipeline prints the undisturbed run's hash ($(cut -c1-16 "$dir/ref.out")...)"
  else bad "restart of the pipeline (exit $rc)" "$dir/restart.diff" "$dir/restart.err"; fi
else
  echo "ok - SKIP restart of the pipeline: giving a tree back its PIDs needs root"
fi

# --- a member without the shim --------------------------------------------------
exec 4> >(cat > "$dir/static.out")
LD_PRELOAD=$libmig sh -c "'$static'; echo done" >&4 2>"$dir/static.err" 4>&- &
job=$!; pids+=($job)
exec 4>&-
wait_for "tick 3" grep -q '^tick 3$' "$dir/static.out"
member=$(sed -n 's/^static member \([0-9]*\)$/\1/p' "$dir/static.out")
comm=$(cat "/proc/$member/comm")
"$migctl" checkpoint "$job" -o "$dir/static.img" > "$dir/static.log" 2>&1; rc=$?
wait "$job"; jrc=$?
wait_for "the job's last line" grep -q '^done$' "$dir/static.out"
if [ $rc -ne 0 ] && [ "$(grep -c . "$dir/static.log")" -eq 1 ] &&
   grep -qF "its member $member ($comm): process $member does not run under mig" "$dir/static.log" &&
   grep -q "every process of a tree must run under libmig.so.*nothing was frozen, the job goes on" "$dir/static.log" &&
   [ ! -e "$dir/static.img" ] && [ $jrc -eq 0 ] && [ "$(grep -c '^tick' "$dir/static.out")" -eq 30 ]; then
  ok "a tree with a static member is refused in one line naming it ($member); the job finishes normally"
else bad "refusal of a static member (exit $rc, job $jrc)" "$dir/static.log" "$dir/static.out" "$dir/static.err"; fi

[ "$fails" -eq 0 ]
