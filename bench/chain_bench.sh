#!/bin/bash
# Periodic incremental checkpoints (`migctl checkpoint --every`) beside none, in the
# same run: the run time of a compute job over MIB MiB that writes about RATE MiB/s,
# without checkpoints and with one every EVERY seconds (issue 14's target: every 60 s
# on a job writing 64 MiB/s costs <= 1 % of its run time; shorter figures here).
#   bench/chain_bench.sh [MIB] [EVERY] [UNITS] [SPIN] [DIR]   (default 256, 3, 200000, 24000, /var/tmp)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIG_BUILD:-$root/build}
mib=${1:-256} every=${2:-3} units=${3:-200000} spin=${4:-24000}
dir=$(mktemp -d "${5:-/var/tmp}/mig-bench-XXXXXX")
job=
trap 'kill -9 $job 2>/dev/null; rm -rf "$dir"' EXIT

run() {  # run WITH_CHAIN: prints the job's DONE line
  LD_PRELOAD=$build/shim/libmig.so "$build/bench/chain_job" "$mib" "$units" "$spin" > "$dir/job.out" &
  job=$!
  for _ in $(seq 1 600); do grep -q READY "$dir/job.out" && break; sleep 0.1; done
  if [ "$1" = 1 ]; then
    rm -rf "$dir/chain"
    "$build/migctl/migctl" checkpoint "$job" -o "$dir/chain" --every "$every" > "$dir/chain.log" 2>&1 || true
  fi
  wait "$job"
  grep DONE "$dir/job.out"
}
plain=() chained=()
for round in 1 2; do
  plain+=("$(run 0 | awk '{print $2}')")
  chained+=("$(run 1 | awk '{print $2}')")
done
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
p=$(best "${plain[@]}") c=$(best "${chained[@]}")
echo "job: $mib MiB, $(run 0 | sed 's/^DONE [0-9.]* s, //; s/,.*//') without checkpoints"
echo "images of the last chained run: $(grep -c '^image' "$dir/chain.log"); frozen: $(sed -n 's/.*frozen \([0-9.]*\) ms/\1/p' "$dir/chain.log" | tr '\n' ' ')ms"
printf 'no checkpoints          : %7.3f s   (runs: %s)\n' "$p" "${plain[*]}"
printf 'a checkpoint every %3s s: %7.3f s   (runs: %s)\n' "$every" "$c" "${chained[*]}"
printf 'cost                    : %5.1f %% of the run time\n' "$(echo "100*($c-$p)/$p" | bc -l)"
