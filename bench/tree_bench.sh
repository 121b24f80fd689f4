#!/bin/bash
# Freeze time of a tree of 8 small processes beside that of one small process, each
# pair measured in the same run (issue 12's target: the tree's at most 2x the single
# process's, not 8x), for
#   - a migration on loopback between two shadowds, stop-and-copy (`--stop-and-copy`)
#     and pre-copy (`--precopy`): `migctl migrate`'s "frozen" time, from the first
#     freeze until every member runs on B (every member parked, captured, sent,
#     restored up to ready there, given up here and released there);
#   - a checkpoint to a file (`migctl checkpoint`'s "frozen" time: from the first
#     freeze request until the image is complete).
# Median of ROUNDS of each, one process and the tree alternating, each migration of
# a job started for it (bench/tree_job.c). Then where each migration's freeze goes:
# the median of each phase the sender marks ($MIG_HOP_TIMES, shadow/hop_times.h; a
# tree's one line, from the first freeze request to B's answer to the last commit)
# and of B's restart of each member (its start to its exec of mig-restore).
# The job and libmig.so run from a copy under /opt (a system directory, where an
# installed mig's shim is): from the build directory, a user's directory that the other
# host may not have (rsc/open_rule.h), each member's image carried the whole of
# libmig.so's mapped pages (1.3 MiB of a member's 1.4), eight times for the tree.
#   bench/tree_bench.sh [ROUNDS] [DIR]      (default 7 rounds; checkpoints in /var/tmp)
set -eu
rounds=${1:-7}
source "$(dirname "$0")/lib.sh"
# Read by both shadowds' hop senders and restarts (inherited); one file per bench run.
export MIG_HOP_TIMES=/tmp/mig-treebench-times.$$
rm -f "$MIG_HOP_TIMES"
bench_two_shadowds treebench
times_all=$dir/times.all
img=$(mktemp -d "${2:-/var/tmp}/mig-tree-bench-XXXXXX")
installed=$(mktemp -d /opt/mig-tree-bench-XXXXXX)
cp "$build/shim/libmig.so" "$build/bench/tree_job" "$installed/"
trap 'bench_end; rm -rf "$img" "$installed" "$MIG_HOP_TIMES"' EXIT

# The processes of a tree_job (the root and its children), for kill -9 at the end.
tree_pids() { echo "$1"; cat /proc/"$1"/task/*/children 2>/dev/null || true; }
start() {  # start N NAME: a tree of N under mig; sets JOB
  LD_PRELOAD=$installed/libmig.so "$installed/tree_job" "$1" > "$dir/$2.out" &
  JOB=$!
  pids+=("$JOB")
  wait_for "$dir/$2.out" READY
  pids+=($(cat /proc/"$JOB"/task/*/children))
}
# migrate N MODE: a fresh tree of N moved A -> B; prints its frozen ms. The job is
# ended after it: its deputies here (each ends its member on B, as killed).
migrate() {
  start "$1" "m$1"
  local members line seen
  members=$(tree_pids "$JOB")
  seen=$(wc -l < "$dir/b.log")
  : > "$MIG_HOP_TIMES"
  line=$(A migrate "$JOB" --to 127.0.0.1:$pb "--$2" 2>"$dir/m.err" | grep '^migrated ') ||
    { echo "migrate of a tree of $1 ($2) failed: $(cat "$dir/m.err")" >&2; exit 1; }
  echo "$line" > "$dir/last-$1-$2.line"
  sed "s/^/$2, $1 process(es)\t/" "$MIG_HOP_TIMES" >> "$times_all"
  case $line in
    *"${2/precopy/pre-copy}"*) ;;
    *) echo "the tree of $1 did not move $2: $line" >&2; exit 1 ;;
  esac
  # Its deputies here and its processes on B (each ends its member there as killed,
  # but not once the shadowds are gone: they are ended by PID too).
  kill -9 $members $(tail -n +"$((seen + 1))" "$dir/b.log" | sed -n 's/.*runs here as PID \([0-9]*\)$/\1/p') 2>/dev/null || true
  sed -E 's/.*frozen ([0-9.]+) ms.*/\1/' <<<"$line"
}
checkpoint() {  # checkpoint PID N: one checkpoint of a tree of N, prints its frozen ms
  : > "$MIG_HOP_TIMES"
  "$build/migctl/migctl" checkpoint "$1" -o "$img/img" > "$img/ckpt.log"
  sed "s/^/checkpoint, $2 process(es)\t/" "$MIG_HOP_TIMES" >> "$times_all"
  rm -f "$img/img"
  sed -n 's/.*frozen \([0-9.]*\) ms.*/\1/p' "$img/ckpt.log"
}

declare -A one eight
for mode in stop-and-copy precopy; do
  for _ in $(seq 1 "$rounds"); do
    one[$mode]+=" $(migrate 1 $mode)"
    eight[$mode]+=" $(migrate 8 $mode)"
  done
done
start 1 c1; c1=$JOB
start 8 c8; c8=$JOB
for _ in $(seq 1 "$rounds"); do
  one[checkpoint]+=" $(checkpoint "$c1" 1)"
  eight[checkpoint]+=" $(checkpoint "$c8" 8)"
done
grep -q 'its tree (8 processes' "$img/ckpt.log" || { echo "the 8-process job was not checkpointed as a tree" >&2; exit 1; }

echo "tree of 8 small processes beside one, frozen (medians of $rounds, same run):"
for mode in stop-and-copy precopy checkpoint; do
  s=$(median ${one[$mode]})
  t=$(median ${eight[$mode]})
  label=$mode
  [[ $mode == checkpoint ]] || label="migrate $mode"
  printf '%-22s one %7.1f ms   tree %7.1f ms   ratio %5.2f (target <= 2)\n' "$label" "$s" "$t" "$(echo "$t / $s" | bc -l)"
  printf '%-22s   one:%s\n%-22s   tree:%s\n' "" "${one[$mode]}" "" "${eight[$mode]}"
done
echo "where the freeze goes (the sender's phases sum to its freeze; each member's restart on B"
echo "starts before the freeze and waits for its image, its other phases are inside 'prepare'):"
awk -f "$root/bench/hop_times.awk" "$times_all"
echo "last result lines:"
sed 's/^/  /' "$dir"/last-*.line
