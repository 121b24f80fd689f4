#!/bin/bash
# Pre-copy and post-copy beside stop-and-copy, in the same run, on loopback: a process
# holding MIB MiB and writing RATE MiB/s of it (bench/dirty_memory.c) migrated A -> B
# with --stop-and-copy, another one the same with --precopy, and three more with
# --postcopy (its figures the median of the three). For each: the freeze, the total time of `migctl migrate` (asking to done:
# for post-copy, until B has every page), the bytes sent before, during and after the
# freeze; then the ratios (issue 14's targets: freeze <= 50 ms with pre-copy, <= 10 ms
# with post-copy, total <= 2x stop-and-copy's).
# usage: bench/precopy_bench.sh [MIB [RATE]]     (defaults 1024 and 16)
set -eu
mib=${1:-1024}
rate=${2:-16}
source "$(dirname "$0")/lib.sh"
bench_two_shadowds precopybench

# run MODE: prints "freeze_ms total_ms before_MiB during_MiB rounds after_MiB"
run() {
  LD_PRELOAD=$build/shim/libmig.so "$build/bench/dirty_memory" "$mib" "$rate" > "$dir/$1.out" &
  local job=$!; pids+=($job)
  wait_for "$dir/$1.out" READY
  local t0 t1 line
  t0=$(date +%s%N)
  line=$(A migrate "$job" --to 127.0.0.1:$pb "--$1" | tail -1)
  t1=$(date +%s%N)
  echo "$line" > "$dir/$1.line"
  local f before during rounds=0 after=0
  f=$(sed -E 's/.*frozen ([0-9.]+) ms.*/\1/' <<<"$line")
  if [ "$1" = postcopy ]; then
    before=0
    read -r during after <<<"$(sed -E 's/.*post-copy: ([0-9.]+) MiB sent while frozen, ([0-9.]+) MiB after it ran on.*/\1 \2/' <<<"$line")"
  elif [ "$1" = precopy ]; then
    read -r rounds before during <<<"$(sed -E 's/.*pre-copy, ([0-9]+) rounds: ([0-9.]+) MiB sent while it ran, ([0-9.]+) MiB while frozen.*/\1 \2 \3/' <<<"$line")"
  else
    before=0
    during=$(sed -E 's/.*stop-and-copy: ([0-9.]+) MiB sent while frozen.*/\1/' <<<"$line")
  fi
  echo "$f $(( (t1 - t0) / 1000000 )) $before $during $rounds $after"
  kill -9 "$job" 2>/dev/null || true
  for p in $(sed -n 's/.*runs here as PID \([0-9]*\)$/\1/p' "$dir/b.log"); do kill -9 "$p" 2>/dev/null || true; done
}
read -r sf st sb sd _ <<<"$(run stop-and-copy)"
read -r pf pt pb_ pd pr _ <<<"$(run precopy)"
# Post-copy's freeze is a few tens of ms, within the noise of a shared machine: three
# runs, each printed, and their median figures (freeze, total) in the table.
qfs=() qts=()
for i in 1 2 3; do
  read -r qf qt _ qd _ qa <<<"$(run postcopy)"
  qfs+=("$qf") qts+=("$qt")
  cp "$dir/postcopy.line" "$dir/postcopy.$i.line"
done
qf=$(median "${qfs[@]}") qt=$(median "${qts[@]}")
printf 'process of %d MiB writing %d MiB/s, migrated on loopback:\n' "$mib" "$rate"
sed 's/^/  /' "$dir/stop-and-copy.line" "$dir/precopy.line" "$dir"/postcopy.[123].line
printf '                      %14s %14s %14s\n' stop-and-copy pre-copy post-copy
printf '  freeze              %11.1f ms %11.1f ms %11.1f ms   (targets: pre-copy <= 50 ms, post-copy <= 10 ms; post-copy: median of %s)\n' "$sf" "$pf" "$qf" "${qfs[*]}"
printf '  total (migctl)      %11d ms %11d ms %11d ms\n' "$st" "$pt" "$qt"
printf '  sent while running  %10.1f MiB %10.1f MiB %10.1f MiB   (%d rounds)\n' "$sb" "$pb_" 0 "$pr"
printf '  sent while frozen   %10.1f MiB %10.1f MiB %10.1f MiB\n' "$sd" "$pd" "$qd"
printf '  sent after it ran on %9.1f MiB %10.1f MiB %10.1f MiB\n' 0 0 "$qa"
printf '  pre-copy / stop-and-copy: freeze %.3f, total %.2f (target <= 2), bytes %.2f\n' \
  "$(echo "$pf / $sf" | bc -l)" "$(echo "$pt / $st" | bc -l)" "$(echo "($pb_ + $pd) / ($sb + $sd)" | bc -l)"
printf '  post-copy / stop-and-copy: freeze %.3f, total %.2f, bytes %.2f\n' \
  "$(echo "$qf / $sf" | bc -l)" "$(echo "$qt / $st" | bc -l)" "$(echo "($qd + $qa) / ($sb + $sd)" | bc -l)"
