#!/bin/bash
# Pre-copy and post-copy beside stop-and-copy, in the same run, on loopback: a process
# holding MIB MiB and writing RATE MiB/s of it (bench/dirty_memory.c) migrated A -> B
# with --stop-and-copy, --precopy and --postcopy, ROUNDS times each, the three modes in
# turn (a shared machine's load drifts; alternating spreads it over all three). For
# each: the freeze, the total time of `migctl migrate` (asking to done: for post-copy,
# until B has every page), the bytes sent before, during and after the freeze, as
# medians; then the ratios (issue 14's targets: freeze <= 50 ms with pre-copy, <= 10 ms
# with post-copy, total <= 2x stop-and-copy's); then where each mode's freeze goes, the
# median of each phase that the sender and B's restart mark ($MIG_HOP_TIMES,
# shadow/hop_times.h): the sender's from the freeze to B's answer to the commit (park,
# capture, drain, prepare = B's phase one, give-up = the job given up at home, commit =
# B's release of the job until it runs there), B's restart's from its start to its exec
# of mig-restore (with `files` and `page-server` for a pre-copy hop, restored lazily on B, and a
# post-copy one; inside `capture` the post-copy sender marks `state` and `memory`, the pre-copy one
# `final-look` before them). A hop that
# fails is listed with its line and left out of the medians.
# usage: bench/precopy_bench.sh [MIB [RATE [ROUNDS]]]     (defaults 1024, 16 and 3)
set -eu
mib=${1:-1024}
rate=${2:-16}
rounds=${3:-3}
source "$(dirname "$0")/lib.sh"
# Read by both shadowds' hop senders and restarts (inherited); one file per bench run.
export MIG_HOP_TIMES=/tmp/mig-precopybench-times.$$
rm -f "$MIG_HOP_TIMES"
bench_two_shadowds precopybench
times_all=$dir/times.all
# run MODE: prints "freeze_ms total_ms before_MiB during_MiB rounds after_MiB"
run() {
  LD_PRELOAD=$build/shim/libmig.so "$build/bench/dirty_memory" "$mib" "$rate" > "$dir/$1.out" &
  local job=$!; pids+=($job)
  wait_for "$dir/$1.out" READY
  : > "$MIG_HOP_TIMES"
  local t0 t1 line seen
  seen=$(wc -l < "$dir/b.log")
  t0=$(date +%s%N)
  line=$(A migrate "$job" --to 127.0.0.1:$pb "--$1" 2>&1 | tail -1)
  t1=$(date +%s%N)
  echo "$line" > "$dir/$1.line"
  if [[ "$line" != migrated* ]]; then
    # A hop that failed (on a loaded machine: a stall past the transfer timeout) has no
    # figures: said with its line, left out of the medians.
    echo FAILED
    end_job "$job"
    end_restored "$dir/b.log" "$seen"
    return
  fi
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
  sed "s/^/$1\t/" "$MIG_HOP_TIMES" >> "$times_all"
  end_job "$job"
  end_restored "$dir/b.log" "$seen"
}
# Each mode ROUNDS times, in turn; a run's figures: freeze total before during rounds after.
declare -A fz tt bb dd rr aa failed
for mode in stop-and-copy precopy postcopy; do fz[$mode]= tt[$mode]= bb[$mode]= dd[$mode]= rr[$mode]= aa[$mode]= failed[$mode]=0; done
for i in $(seq 1 "$rounds"); do
  for mode in stop-and-copy precopy postcopy; do
    out=$(run $mode)
    cp "$dir/$mode.line" "$dir/$mode.$i.line"
    if [ "$out" = FAILED ]; then failed[$mode]=$(( ${failed[$mode]} + 1 )); continue; fi
    read -r f t b d r a <<<"$out"
    fz[$mode]+=" $f" tt[$mode]+=" $t" bb[$mode]+=" $b" dd[$mode]+=" $d" rr[$mode]+=" $r" aa[$mode]+=" $a"
  done
done
for mode in stop-and-copy precopy postcopy; do
  [ -n "${fz[$mode]}" ] || { echo "bench: every $mode hop failed (their lines below); no figures" >&2; exit 1; }
done
rm -f "$MIG_HOP_TIMES"
m() { median $1; }  # median of a word list
sf=$(m "${fz[stop-and-copy]}") st=$(m "${tt[stop-and-copy]}") sb=$(m "${bb[stop-and-copy]}") sd=$(m "${dd[stop-and-copy]}")
pf=$(m "${fz[precopy]}") pt=$(m "${tt[precopy]}") pb_=$(m "${bb[precopy]}") pd=$(m "${dd[precopy]}") pr=$(m "${rr[precopy]}")
qf=$(m "${fz[postcopy]}") qt=$(m "${tt[postcopy]}") qd=$(m "${dd[postcopy]}") qa=$(m "${aa[postcopy]}")
printf 'process of %d MiB writing %d MiB/s, migrated on loopback, %d rounds of each mode in turn:\n' "$mib" "$rate" "$rounds"
for i in $(seq 1 "$rounds"); do sed 's/^/  /' "$dir/stop-and-copy.$i.line" "$dir/precopy.$i.line" "$dir/postcopy.$i.line"; done
printf 'medians                %14s %14s %14s\n' stop-and-copy pre-copy post-copy
printf '  freeze              %11.1f ms %11.1f ms %11.1f ms   (targets: pre-copy <= 50 ms, post-copy <= 10 ms)\n' "$sf" "$pf" "$qf"
printf '    runs:  stop-and-copy%s; pre-copy%s; post-copy%s\n' "${fz[stop-and-copy]}" "${fz[precopy]}" "${fz[postcopy]}"
printf '    failed hops (left out): stop-and-copy %d, pre-copy %d, post-copy %d\n' "${failed[stop-and-copy]}" "${failed[precopy]}" "${failed[postcopy]}"
printf '  total (migctl)      %11d ms %11d ms %11d ms\n' "$st" "$pt" "$qt"
printf '  sent while running  %10.1f MiB %10.1f MiB %10.1f MiB   (%d rounds)\n' "$sb" "$pb_" 0 "$pr"
printf '  sent while frozen   %10.1f MiB %10.1f MiB %10.1f MiB\n' "$sd" "$pd" "$qd"
printf '  sent after it ran on %9.1f MiB %10.1f MiB %10.1f MiB\n' 0 0 "$qa"
printf '  pre-copy / stop-and-copy: freeze %.3f, total %.2f (target <= 2), bytes %.2f\n' \
  "$(echo "$pf / $sf" | bc -l)" "$(echo "$pt / $st" | bc -l)" "$(echo "($pb_ + $pd) / ($sb + $sd)" | bc -l)"
printf '  post-copy / stop-and-copy: freeze %.3f, total %.2f, bytes %.2f\n' \
  "$(echo "$qf / $sf" | bc -l)" "$(echo "$qt / $st" | bc -l)" "$(echo "($qd + $qa) / ($sb + $sd)" | bc -l)"
echo "where the freeze goes (the sender's phases sum to its freeze; B's restart runs inside 'prepare',"
echo "except post-copy's start, which is before the freeze):"
awk -f "$root/bench/hop_times.awk" "$times_all"
