#!/usr/bin/env bash
# Incremental checkpoints (issue 14): `migctl checkpoint PID -o DIR --every S` keeps a
# chain of 5 images of the memory feature program while it writes (each written while the
# job runs, from a copy taken frozen; a chain over the copy limit written frozen, as its
# lines say); each link restarted
# must print the rest of the undisturbed run's output and pass the program's own check
# of every page; `migctl restart DIR` restarts the newest; `migctl image merge` makes a
# whole image that restarts the same; a missing, a corrupt and a replaced parent are
# refused with one line.
#   usage: chain_test.sh MIGCTL LIBMIG FEATURE_MEMORY
set -u
migctl=$1 libmig=$2 prog=$3
source "$(dirname "$0")/../lib/check.sh"
check_setup chain
work=$dir
failed=0
fail() { echo "FAIL: $*"; failed=1; }

# The reference runs beside the job (read once the chain is written). Each job holds
# after STEP 58 until its checkpoints are done (feature.h, feature_hold): a loaded
# machine cannot let it end before the last of them.
"$prog" 64M 60 > "$work/ref.out" & ref=$!; pids+=($ref)

mkfifo "$work/job.fifo"
cat "$work/job.fifo" > "$work/job.out" & pids+=($!)
MIG_FEATURE_HOLD="58:$work/chain.done" LD_PRELOAD=$libmig "$prog" 64M 60 > "$work/job.fifo" 2> "$work/job.err" &
job=$!; pids+=($job)
wait_for "STEP 2" grep -qx "STEP 2" "$work/job.out" || { echo "FAIL: the job did not print STEP 2"; cat "$work/job.err"; exit 1; }
if ! timeout 120 "$migctl" checkpoint "$job" -o "$work/chain" --every 0.3 --count 5 > "$work/ckpt.log" 2>&1; then
  fail "migctl checkpoint --every: $(cat "$work/ckpt.log")"
fi
: > "$work/chain.done"
cat "$work/ckpt.log"
wait "$ref" || { echo "FAIL: the reference run failed"; exit 1; }
ref_len=$(wc -c < "$work/ref.out")
[ "$(grep -c '^image [0-9] of process' "$work/ckpt.log")" = 5 ] || fail "not 5 images"
grep -q "^image 1 .*whole" "$work/ckpt.log" || fail "the first image is not whole"
[ "$(grep -c 'written since ckpt-' "$work/ckpt.log")" = 4 ] || fail "images 2-5 are not incremental"
# Each image's pages copied frozen, then written while the job ran (FrozenCopy).
[ "$(grep -c '; written in [0-9]* ms, the job running ([0-9]* KiB copied frozen); frozen ' "$work/ckpt.log")" = 5 ] ||
  fail "not every image was written while the job ran"
wait "$job"; st=$?
[ "$st" = 0 ] && cmp -s "$work/ref.out" <(cat "$work/job.out") || fail "the job checkpointed every 0.3 s did not end as the reference (status $st)"

# restart_check NAME PATH: the restart of PATH must print the end of the reference.
# restart_start NAME PATH starts it in the background (several run at once: each a
# process of its own), restart_check NAME PATH waits for it and checks.
declare -A restarting=()
restart_start() {
  { timeout 120 "$migctl" restart "$2" < /dev/null > "$work/$1.out" 2> "$work/$1.err"; echo $? > "$work/$1.status"; } &
  restarting[$1]=$!; pids+=($!)
}
restart_check() {
  local name=$1 path=$2 out=$work/$1.out st got
  [ -n "${restarting[$name]-}" ] || restart_start "$name" "$path"
  wait "${restarting[$name]}"; st=$(cat "$work/$name.status" 2>/dev/null)
  got=$(wc -c < "$out")
  if [ "$st" != 0 ] || [ "$got" -eq 0 ] || [ "$got" -gt "$ref_len" ] || ! cmp -s <(tail -c "$got" "$work/ref.out") "$out"; then
    fail "$name: restart of $path: status $st, $got bytes not the end of the reference; $(tail -n 3 "$work/$name.err")"
  else
    ok "$name: restart of $path printed the last $got of $ref_len bytes, status 0"
  fi
}
for k in 1 2 3 4 5; do restart_start "link$k" "$work/chain/ckpt-000$k.mig"; done

# Above the copy limit (here 0) an image is written frozen, as one line says, and restarts the same.
mkfifo "$work/job2.fifo"
cat "$work/job2.fifo" > "$work/job2.out" & pids+=($!)
MIG_FEATURE_HOLD="58:$work/frozen.done" LD_PRELOAD=$libmig "$prog" 64M 60 > "$work/job2.fifo" 2> "$work/job2.err" &
job2=$!; pids+=($job2)
wait_for "STEP 2" grep -qx "STEP 2" "$work/job2.out" || fail "the second job did not print STEP 2"
if MIG_CHAIN_COPY_LIMIT_MIB=0 timeout 120 "$migctl" checkpoint "$job2" -o "$work/frozen" --every 0.3 --count 2 \
    > "$work/frozen.log" 2>&1; then
  [ "$(grep -c '; written frozen (.* MiB of pages, over the copy limit: .*; frozen ' "$work/frozen.log")" = 2 ] ||
    fail "images over the copy limit not written frozen: $(cat "$work/frozen.log")"
else
  fail "migctl checkpoint --every with MIG_CHAIN_COPY_LIMIT_MIB=0: $(cat "$work/frozen.log")"
fi
: > "$work/frozen.done"
wait "$job2"; st=$?
[ "$st" = 0 ] && cmp -s "$work/ref.out" "$work/job2.out" || fail "the job checkpointed frozen did not end as the reference (status $st)"
for k in 1 2 3 4 5; do restart_check "link$k" "$work/chain/ckpt-000$k.mig"; done
restart_start frozen2 "$work/frozen/ckpt-0002.mig"
restart_start newest "$work/chain"
restart_check frozen2 "$work/frozen/ckpt-0002.mig"
restart_check newest "$work/chain"
if "$migctl" image merge "$work/chain" -o "$work/whole.mig" > "$work/merge.log" 2>&1; then
  ok "$(cat "$work/merge.log")"
  "$migctl" image info "$work/whole.mig" | grep -q " parent " && fail "the merged image still names a parent"
  restart_check merged "$work/whole.mig"
else
  fail "migctl image merge: $(cat "$work/merge.log")"
fi

# refused: one line naming what is wrong, exit status not 0
refused() {  # refused NAME WANT PATH
  local out
  out=$(timeout 60 "$migctl" restart "$3" 2>&1 < /dev/null); st=$?
  if [ "$st" = 0 ] || [ "$(printf '%s\n' "$out" | wc -l)" != 1 ] || ! grep -q -- "$2" <<<"$out"; then
    fail "$1: restart gave status $st and: $out"
  else
    ok "$1 refused: $out"
  fi
}
cp -r "$work/chain" "$work/missing" && rm "$work/missing/ckpt-0002.mig"
refused "missing parent" "ckpt-0002.mig of image .*ckpt-0003.mig is missing" "$work/missing/ckpt-0004.mig"
cp -r "$work/chain" "$work/corrupt"
printf '\x55' | dd of="$work/corrupt/ckpt-0003.mig" bs=1 seek=20000 conv=notrunc status=none
refused "corrupt parent" "ckpt-0003.mig cannot be used" "$work/corrupt/ckpt-0005.mig"
cp -r "$work/chain" "$work/replaced" && cp "$work/chain/ckpt-0001.mig" "$work/replaced/ckpt-0002.mig"
refused "replaced parent" "is not the parent image" "$work/replaced/ckpt-0003.mig"

[ "$failed" = 0 ] && echo PASS
exit "$failed"
