#!/bin/bash
# What libmig.so costs a job that has not moved (issue 15's target: at most 1.05x
# native for a write to a local fd and clock_gettime). bench/interposed_calls times
# each call natively and under LD_PRELOAD=libmig.so, alternating, ROUNDS times; the
# medians are printed side by side with their ratio.
# usage: bench/interposition_bench.sh [ROUNDS [COUNT]]     (defaults 5 and 2000000)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIG_BUILD:-$root/build}
rounds=${1:-5}
count=${2:-2000000}
out=$(mktemp -d /tmp/mig-interpose.XXXXXX)
trap 'rm -rf "$out"' EXIT
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
for r in $(seq 1 "$rounds"); do
  "$build/bench/interposed_calls" "$count" >"$out/native.$r"
  LD_PRELOAD=$build/shim/libmig.so "$build/bench/interposed_calls" "$count" >"$out/mig.$r"
done
printf '%-26s %12s %12s %8s\n' "ns per call (median of $rounds)" native libmig ratio
cut -f1 "$out/native.1" | while IFS= read -r name; do
  n=() m=()
  for r in $(seq 1 "$rounds"); do
    n+=("$(awk -F'\t' -v k="$name" '$1 == k { print $2 }' "$out/native.$r")")
    m+=("$(awk -F'\t' -v k="$name" '$1 == k { print $2 }' "$out/mig.$r")")
  done
  nm=$(median "${n[@]}") mm=$(median "${m[@]}")
  printf '%-26s %12s %12s %8.3f\n' "$name" "$nm" "$mm" "$(echo "$mm / $nm" | bc -l)"
done
echo "(target: write and clock_gettime <= 1.05x native; the machine's load: $(cut -d' ' -f1-3 /proc/loadavg))"
