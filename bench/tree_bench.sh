#!/bin/bash
# Freeze time of a checkpoint of a tree of 8 small processes beside that of one
# small process, measured in the same run (issue 12's target: the tree's at most
# 2x the single process's, not 8x). The figure is migctl checkpoint's "frozen"
# time: from the first freeze request until the image is complete (every member
# parked, captured and written), median of ROUNDS checkpoints each, alternating.
#   bench/tree_bench.sh [ROUNDS] [DIR]      (default 7 rounds in /var/tmp)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIG_BUILD:-$root/build}
rounds=${1:-7}
dir=$(mktemp -d "${2:-/var/tmp}/mig-tree-bench-XXXXXX")
jobs=()
cleanup() {
  local j c
  for j in "${jobs[@]}"; do
    for c in $(cat /proc/"$j"/task/*/children 2>/dev/null); do kill -9 "$c" 2>/dev/null; done
    kill -9 "$j" 2>/dev/null
  done
  rm -rf "$dir"
}
trap cleanup EXIT

start() {  # start N: a tree of N; sets JOB
  LD_PRELOAD=$build/shim/libmig.so "$build/bench/tree_job" "$1" > "$dir/job$1.out" &
  JOB=$!
  jobs+=("$JOB")
  disown "$JOB"
  for _ in $(seq 1 600); do grep -q READY "$dir/job$1.out" && return; sleep 0.05; done
  echo "tree_job $1 did not get ready" >&2; exit 1
}
frozen() {  # frozen PID: one checkpoint, prints its frozen ms
  "$build/migctl/migctl" checkpoint "$1" -o "$dir/img" > "$dir/ckpt.log"
  rm -f "$dir/img"
  sed -n 's/.*frozen \([0-9.]*\) ms.*/\1/p' "$dir/ckpt.log"
}
start 1; one=$JOB
start 8; eight=$JOB
singles=() trees=()
for _ in $(seq 1 "$rounds"); do
  singles+=("$(frozen "$one")")
  trees+=("$(frozen "$eight")")
done
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
s=$(median "${singles[@]}")
t=$(median "${trees[@]}")
grep -o 'its tree ([0-9]* processes' "$dir/ckpt.log" > /dev/null || { echo "the 8-process job was not taken as a tree" >&2; exit 1; }
printf 'one process      : %7.1f ms frozen   (median of %s)\n' "$s" "${singles[*]}"
printf 'tree of 8        : %7.1f ms frozen   (median of %s)\n' "$t" "${trees[*]}"
printf 'ratio tree / one : %7.2f   (target <= 2)\n' "$(echo "$t / $s" | bc -l)"
