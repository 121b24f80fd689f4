#!/bin/bash
# What libmig.so costs a job that has not moved (issue 15's target: at most 1.05x
# native for a write to a local fd and clock_gettime). bench/interposed_calls times
# each call (in CPU time: the machine is shared) natively and under
# LD_PRELOAD=libmig.so, in turn, ROUNDS times, which one goes first alternating so
# neither always gets the quieter moment; the medians are printed side by side with
# their ratio, and every round's figures below them. A third column, native with one
# idle thread started (as libmig.so's control thread is), shows what any second thread
# costs by itself (the kernel counts references to a shared fd table's files; the
# control thread has a table of its own, so libmig.so should be near native, not near
# this column). A fourth, native with an idle thread in a table of its own, is what is
# left of a second thread (glibc's cancellation-point work): libmig.so's floor while its
# control thread is a pthread. MIG_BEFORE_LIB=another libmig.so (an older build) adds its column,
# measured in the same rounds.
# usage: bench/interposition_bench.sh [ROUNDS [COUNT]]     (defaults 7 and 2000000)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIG_BUILD:-$root/build}
rounds=${1:-7}
count=${2:-2000000}
out=$(mktemp -d /tmp/mig-interpose.XXXXXX)
trap 'rm -rf "$out"' EXIT
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
native() { "$build/bench/interposed_calls" "$count" >"$out/native.$1"; }
mig() { LD_PRELOAD=$build/shim/libmig.so "$build/bench/interposed_calls" "$count" >"$out/mig.$1"; }
threaded() {
  "$build/bench/interposed_calls" "$count" thread >"$out/thread.$1"
  "$build/bench/interposed_calls" "$count" ownthread >"$out/own.$1"
}
before=${MIG_BEFORE_LIB:-}
older() { if [ -n "$before" ]; then LD_PRELOAD=$before "$build/bench/interposed_calls" "$count" >"$out/before.$1"; fi; }
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then native "$r"; mig "$r"; else mig "$r"; native "$r"; fi
  threaded "$r"
  older "$r"
done
printf '%-26s %12s %12s %8s %14s %10s' "ns per call (median of $rounds)" native libmig ratio "native+thread" "+own-table"
if [ -n "$before" ]; then printf ' %12s %8s' "before" ratio; fi
echo
cut -f1 "$out/native.1" | while IFS= read -r name; do
  n=() m=() t=() b=() o=()
  for r in $(seq 1 "$rounds"); do
    if [ -n "$before" ]; then b+=("$(awk -F'\t' -v k="$name" '$1 == k { print $2 }' "$out/before.$r")"); fi
    n+=("$(awk -F'\t' -v k="$name" '$1 == k { print $2 }' "$out/native.$r")")
    m+=("$(awk -F'\t' -v k="$name" '$1 == k { print $2 }' "$out/mig.$r")")
    t+=("$(awk -F'\t' -v k="$name" '$1 == k { print $2 }' "$out/thread.$r")")
    o+=("$(awk -F'\t' -v k="$name" '$1 == k { print $2 }' "$out/own.$r")")
  done
  nm=$(median "${n[@]}") mm=$(median "${m[@]}") tm=$(median "${t[@]}") om=$(median "${o[@]}")
  printf '%-26s %12s %12s %8.3f %14s %10s' "$name" "$nm" "$mm" "$(echo "$mm / $nm" | bc -l)" "$tm" "$om"
  if [ -n "$before" ]; then bm=$(median "${b[@]}"); printf ' %12s %8.3f' "$bm" "$(echo "$bm / $nm" | bc -l)"; fi
  echo
  printf '    %-22s %s | %s\n' "(each round)" "${n[*]}" "${m[*]}"
done
echo "(target: write and clock_gettime <= 1.05x native; the machine's load: $(cut -d' ' -f1-3 /proc/loadavg))"
