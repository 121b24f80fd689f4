#!/bin/sh
# End-to-end restore without the checkpoint side (see self_checkpoint.cc):
#   self_checkpoint_test.sh SELF_CHECKPOINT MIG_RESTORE
# Each variant: the program checkpoints itself into a fresh directory, then is
# restarted by mig-restore and checks itself. The ASLR-off variant puts the restorer,
# its stack, the plan and the vDSO where the process's regions were, so the restorer
# has to move out of the way.
set -u
prog=$1
restorer=$2
failed=0

run_variant() {  # NAME [WRAPPER...]
  name=$1
  shift
  dir=$(mktemp -d /tmp/mig-restore-e2e.XXXXXX)
  # MIG_TEST_SHOW_MAPS: the restored program (the dumped one's environment) prints its maps.
  if ! MIG_TEST_SHOW_MAPS=1 "$@" "$prog" dump "$dir" >"$dir/dump.out" 2>&1 || ! grep -q '^DUMPED$' "$dir/dump.out"; then
    echo "FAIL [$name] self-checkpoint:"
    cat "$dir/dump.out"
    failed=1
    rm -rf "$dir"
    return
  fi
  MIG_RESTORE_DEBUG=1 "$@" "$prog" restore "$dir" "$restorer" >"$dir/restore.out" 2>&1
  rc=$?
  sed "s/^/[$name] /" "$dir/restore.out"
  if [ $rc -ne 0 ] || ! grep -q '^RESTORED OK$' "$dir/restore.out"; then
    echo "FAIL [$name] restored process exited with $rc"
    failed=1
  fi
  # The worker's temporary stack is unmapped by the worker itself as it leaves the
  # restorer (the main thread no longer waits for it): gone from the maps the program
  # printed once the worker had run again.
  stacks=$(sed -n "s/.*threads' temporary stacks 0x\([0-9a-f]*\)-0x\([0-9a-f]*\)$/\1-\2/p" "$dir/restore.out")
  if [ -z "$stacks" ]; then
    echo "FAIL [$name] mig-restore did not say where the threads' temporary stacks were"
    failed=1
  elif grep -q "^$stacks " "$dir/restore.out"; then
    echo "FAIL [$name] the threads' temporary stacks ($stacks) are still mapped"
    failed=1
  else
    echo "ok   [$name] the threads' temporary stacks ($stacks) were unmapped"
  fi
  rm -rf "$dir"
}

run_variant aslr
if setarch -R true 2>/dev/null; then
  run_variant no-aslr setarch -R
  run_variant no-aslr-again setarch -R
else
  echo "SKIP [no-aslr] setarch -R is not available"
fi
exit $failed
