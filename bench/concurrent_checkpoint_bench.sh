#!/bin/bash
# Concurrent checkpoint beside stop-the-world, in the same run, on a job holding MIB
# MiB that keeps writing RATE MiB/s (bench/dirty_memory): how long the job is frozen
# and how long the whole checkpoint takes. Issue 14's target: frozen <= 10 ms
# whatever the size.
#   bench/concurrent_checkpoint_bench.sh [MIB] [RATE] [DIR]   (default 1024, 16, /var/tmp)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIG_BUILD:-$root/build}
mib=${1:-1024}
rate=${2:-16}
dir=$(mktemp -d "${3:-/var/tmp}/mig-bench-XXXXXX")
job=
trap 'kill -9 $job 2>/dev/null || true; rm -rf "$dir"' EXIT

LD_PRELOAD=$build/shim/libmig.so "$build/bench/dirty_memory" "$mib" "$rate" > "$dir/job.out" &
job=$!
for _ in $(seq 1 600); do grep -q READY "$dir/job.out" && break; sleep 0.1; done
grep -q READY "$dir/job.out" || { echo "the job did not get ready" >&2; exit 1; }

# One checkpoint: prints "FROZEN_MS TOTAL_S MODE".
one() {
  local start end
  sync
  start=$(date +%s.%N)
  "$build/migctl/migctl" checkpoint "$job" -o "$dir/job.img" "$@" > "$dir/ckpt.log"
  end=$(date +%s.%N)
  rm -f "$dir/job.img"
  printf '%s %s %s\n' "$(sed -n 's/.*frozen \([0-9.]*\) ms.*/\1/p' "$dir/ckpt.log")" \
    "$(echo "$end - $start" | bc -l)" "$(sed -n 's/.*frozen [0-9.]* ms (\([a-z-]*\).*/\1/p' "$dir/ckpt.log")"
}
stw_f=() stw_t=() con_f=() con_t=() modes=()
for round in 1 2 3; do
  read -r f t m < <(one --stop-the-world); stw_f+=("$f") stw_t+=("$t")
  read -r f t m < <(one); con_f+=("$f") con_t+=("$t") modes+=("$m")
done
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
echo "job: $mib MiB, writing $rate MiB/s; last concurrent checkpoint: $(cat "$dir/ckpt.log")"
printf 'stop-the-world: frozen %8.1f ms, total %6.3f s   (frozen: %s)\n' "$(median "${stw_f[@]}")" \
  "$(median "${stw_t[@]}")" "${stw_f[*]}"
printf 'concurrent    : frozen %8.1f ms, total %6.3f s   (frozen: %s; modes: %s)\n' "$(median "${con_f[@]}")" \
  "$(median "${con_t[@]}")" "${con_f[*]}" "${modes[*]}"
