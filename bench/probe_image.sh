# probe_image BUILD DIR NAME MIB (sourced by the restart benches): DIR/NAME.img, a
# checkpoint by BUILD's migctl of BUILD's restart_probe under BUILD's shim, holding MIB
# MiB and waiting on stdin; DIR/NAME.out is its output. Its stdin, stdout and stderr are
# pipes: a restart connects them to its own, and mig-restore's MIG_RESTORE_DEBUG lines
# go to stderr (a file there would have changed: the restart refused). `job` is set
# while it runs, for the caller's exit trap.
probe_image() {
  local b=$1 d=$2 n=$3 sleeper
  # The sleeper and the reading cat are the caller's children, not the job's.
  exec 6< <(exec sleep 600)
  sleeper=$!
  exec 4> >(cat > "$d/$n.out")
  LD_PRELOAD=$b/shim/libmig.so "$b/bench/restart_probe" "$4" <&6 >&4 2>&4 6<&- 4>&- &
  job=$!
  exec 6<&- 4>&-
  for _ in $(seq 1 600); do grep -q READY "$d/$n.out" && break; sleep 0.05; done
  "$b/migctl/migctl" checkpoint "$job" -o "$d/$n.img" --stop > /dev/null
  kill $sleeper
  wait $job 2>/dev/null || true
  job=
}
