#!/bin/bash
# GNU sort of a file at home, after its job moved (issue 13's target: within 1.5x of
# the same sort at home), between two shadowd on loopback. Each figure beside its
# baselines measured in the same run:
#   plain      sort with no mig at all
#   at home    sort under mig (LD_PRELOAD=libmig.so), not moved
#   moved      the job moved to B first (bench/exec_when waits, then becomes sort):
#              every read of the input and every write of the output goes home over
#              the job's direct link (shadow/direct_link.h); its writes go behind
#   moved-sync the same with MIG_SYNC_WRITES=1 (writes wait, as before write-behind)
# The input is MB megabytes of random base64 lines in a home directory; the output goes
# to a file there too, and each output is checked against the plain sort's.
# usage: bench/sort_bench.sh [MB [ROUNDS]]   (default 80 MB, 1 round; the median of
#        each figure over the rounds)
set -eu
mb=${1:-80}
rounds=${2:-1}
source "$(dirname "$0")/lib.sh"
bench_two_shadowds sortbench
now() { date +%s.%N; }
# 76 characters of base64 a line: 77 bytes for every 57 random ones.
head -c $((mb * 1000000 * 57 / 77)) /dev/urandom | base64 -w 76 > "$dir/input"
export LC_ALL=C  # the same order everywhere, and sort's fastest comparison

run() {  # run MODE(plain|home|moved) ROUND: prints the seconds sort took
  local mode=$1 r=$2 out=$dir/out.$1.$2 start end runner p
  rm -f "$dir/go"
  case $mode in
    plain)
      start=$(now); sort -o "$out" "$dir/input"; end=$(now) ;;
    home)
      start=$(now); LD_PRELOAD=$build/shim/libmig.so sort -o "$out" "$dir/input"; end=$(now) ;;
    moved|moved-sync)
      local setting=""
      [ "$mode" = moved-sync ] && setting=MIG_SYNC_WRITES=1
      env ${setting:+"$setting"} LD_PRELOAD=$build/shim/libmig.so "$build/bench/exec_when" "$dir/go" sort -o "$out" "$dir/input" 2> "$dir/job.err" &
      runner=$!; pids+=($runner)
      wait_for "$dir/job.err" READY
      p=$(sed -n 's/^READY //p' "$dir/job.err")
      A migrate "$p" --to 127.0.0.1:$pb > "$dir/migrate.out" || { cat "$dir/migrate.out" >&2; exit 1; }
      start=$(now)
      touch "$dir/go"
      wait "$runner" || { echo "sort_bench: the moved sort failed:" >&2; cat "$dir/job.err" >&2; exit 1; }
      end=$(now) ;;
  esac
  if [ "$mode" = plain ]; then
    cp "$out" "$dir/expected"
  elif ! cmp -s "$out" "$dir/expected"; then
    echo "sort_bench: the $mode sort's output differs from plain sort's" >&2; exit 1
  fi
  rm -f "$out"
  echo "$end - $start" | bc -l
}

plain=() home=() moved=() synced=()
for r in $(seq 1 "$rounds"); do
  plain+=("$(run plain "$r")")
  home+=("$(run home "$r")")
  moved+=("$(run moved "$r")")
  synced+=("$(run moved-sync "$r")")
done
p=$(median "${plain[@]}") h=$(median "${home[@]}") m=$(median "${moved[@]}") s=$(median "${synced[@]}")
printf 'GNU sort of a %d MB file at home (LC_ALL=C, output to a home file; median of %d):\n' "$mb" "$rounds"
printf '  plain, no mig          : %7.2f s   (each round: %s)\n' "$p" "$(printf '%.2f ' "${plain[@]}")"
printf '  under mig, at home     : %7.2f s   (each round: %s)\n' "$h" "$(printf '%.2f ' "${home[@]}")"
printf '  after a move to B      : %7.2f s   (each round: %s)\n' "$m" "$(printf '%.2f ' "${moved[@]}")"
printf '  the same, synchronous  : %7.2f s   (each round: %s; MIG_SYNC_WRITES=1, as before write-behind)\n' \
  "$s" "$(printf '%.2f ' "${synced[@]}")"
printf '  ratio                  : %7.2fx at home (target <= 1.5x); synchronous %.2fx\n' "$(echo "$m / $h" | bc -l)" \
  "$(echo "$s / $h" | bc -l)"
