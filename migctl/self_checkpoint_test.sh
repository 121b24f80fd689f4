#!/bin/bash
# mig_checkpoint (shim/mig.h), as a program uses it: a program under libmig.so
# checkpoints itself halfway through a sum and goes on (the call returns 0);
# `migctl restart` of its image continues it from the call, which returns 1 there,
# and both finish with the same sum. A path that cannot be written fails the call
# (-1, EIO, migctl's one line) and the program goes on; without mig the call fails
# with ENOSYS.
# Args: MIGCTL LIBMIG SELF_CHECKPOINT
set -u
migctl=$(realpath "$1") libmig=$(realpath "$2") job=$(realpath "$3")
source "$(dirname "$0")/../tests/lib/check.sh"
check_setup selfckpt
bad_lines=20

sum1000=333833500 sum2000=2668667000
# Its stdout a pipe: a restarted process's pipes become the restarting migctl's.
MIG_MIGCTL=$migctl LD_PRELOAD=$libmig timeout 60 "$job" "$dir/job.img" "$dir/no/such/dir/x.img" 2> "$dir/err1" |
  cat > "$dir/out1"
rc=${PIPESTATUS[0]}
if [ $rc -eq 0 ] && [ "$(sed -n 1p "$dir/out1")" = "before: sum $sum1000" ] &&
   grep -qx "bad path: returned -1 (Input/output error): migctl: cannot create $dir/no/such/dir/x.img: No such file or directory" "$dir/out1" &&
   [ "$(tail -n 2 "$dir/out1")" = "$(printf 'after: returned 0\ndone: sum %s' $sum2000)" ] && [ -s "$dir/job.img" ]; then
  ok "mig_checkpoint: a bad path fails with migctl's line, then the image is written and the call returns 0"
else bad "the checkpointing run (status $rc)" "$dir/out1" "$dir/err1"; fi

MIG_MIGCTL=$migctl timeout 60 "$migctl" restart "$dir/job.img" > "$dir/out2" 2> "$dir/err2"
rc=$?
if [ $rc -eq 0 ] && [ "$(cat "$dir/out2")" = "$(printf 'after: returned 1\ndone: sum %s' $sum2000)" ]; then
  ok "migctl restart of that image: the call returns 1 there, and the sum is the same"
else bad "the restarted run (status $rc)" "$dir/out2" "$dir/err2"; fi

timeout 60 "$job" "$dir/plain.img" > "$dir/out3" 2>&1
rc=$?
if [ $rc -eq 1 ] && [ "$(tail -n 1 "$dir/out3")" = "mig_checkpoint failed: Function not implemented" ] && [ ! -e "$dir/plain.img" ]; then
  ok "without mig: mig_checkpoint fails with ENOSYS"
else bad "the run without mig (status $rc)" "$dir/out3"; fi

[ "$fails" -eq 0 ]
